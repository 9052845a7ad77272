/*
 * epoll_echo: the yardstick TCP echo server that bench/compare.py measures sockecho against.
 *
 * The textbook design, written honestly: one thread, level-triggered epoll, non-blocking
 * sockets, and one 64 KiB buffer per connection that the connection keeps for its whole life.
 * While a connection has unsent output it is not read from (EPOLLOUT instead of EPOLLIN), so a
 * client that does not read cannot make the server buffer without bound.
 *
 * Usage: epoll_echo [HOST] PORT      (HOST defaults to 127.0.0.1; PORT 0 picks a free port)
 * Prints "listening on tcp://HOST:PORT" on stderr once ready; exits 0 on SIGINT or SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    size_t off; /* first unsent byte of buf */
    size_t len; /* end of the bytes still to send; 0 when nothing is pending */
    char buf[BUF_SIZE];
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void close_conn(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Switches a connection between waiting to read and waiting to write. */
static int watch(int ep, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends what is pending. Returns 0 when all is sent, 1 when the socket is full, -1 on error. */
static int flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
        }
        c->off += (size_t)n;
    }
    c->off = c->len = 0;
    return 0;
}

static void on_readable(int ep, struct conn *c)
{
    ssize_t n = recv(c->fd, c->buf, BUF_SIZE, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close_conn(ep, c);
        return;
    }
    if (n < 0)
        return;
    c->off = 0;
    c->len = (size_t)n;
    int r = flush(c);
    if (r < 0 || (r == 1 && watch(ep, c, EPOLLOUT) < 0))
        close_conn(ep, c); /* r == 1: stop reading until the peer takes what is pending */
}

static void on_writable(int ep, struct conn *c)
{
    int r = flush(c);
    if (r < 0 || (r == 0 && watch(ep, c, EPOLLIN) < 0))
        close_conn(ep, c);
}

static void accept_all(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("accept4"); /* e.g. EMFILE: leave the rest in the backlog */
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = malloc(sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->off = c->len = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

static int listen_on(const char *host, const char *port_text)
{
    char *end;
    long port = strtol(port_text, &end, 10);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (*port_text == '\0' || *end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "epoll_echo: bad port %s\n", port_text);
        return -1;
    }
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "epoll_echo: bad IPv4 address %s\n", host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, SOMAXCONN) < 0) {
        fprintf(stderr, "epoll_echo: cannot listen on %s:%s: %s\n", host, port_text,
                strerror(errno));
        return -1;
    }
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    fprintf(stderr, "listening on tcp://%s:%u\n", host, ntohs(addr.sin_port));
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: epoll_echo [HOST] PORT\n");
        return 2;
    }
    /* No SA_RESTART: the signal must interrupt epoll_wait so the loop sees `stop`. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int lfd = listen_on(argc == 3 ? argv[1] : "127.0.0.1", argv[argc - 1]);
    if (lfd < 0)
        return 1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    /* The listener's data.ptr is NULL, which tells it apart from connections. */
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        perror("epoll");
        return 1;
    }

    struct epoll_event events[MAX_EVENTS];
    while (!stop) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            uint32_t ev = events[i].events;
            if (c == NULL)
                accept_all(ep, lfd);
            else if (ev & EPOLLERR)
                close_conn(ep, c);
            else if (c->len > 0)
                on_writable(ep, c); /* EPOLLOUT, or EPOLLHUP while output is pending */
            else
                on_readable(ep, c); /* EPOLLIN, or EPOLLHUP: recv sees the end */
        }
    }
    close(lfd);
    close(ep);
    return 0;
}
