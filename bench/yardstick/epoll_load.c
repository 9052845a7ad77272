/*
 * epoll_load: the yardstick closed-loop TCP load generator for bench/compare.py.
 *
 * CONNS connections each send a SIZE-byte message, wait until all SIZE bytes have come back,
 * and send the next, as fast as the server allows. One thread, level-triggered epoll. After
 * WARMUP seconds it counts completed round trips for DURATION seconds, then prints one JSON
 * line on stdout:
 *   {"msgs_per_s":..,"client_cpu_s":..,"messages":..,"duration_s":..}
 * where client_cpu_s is this process's user+system time during the measured period.
 *
 * Usage: epoll_load HOST PORT CONNS SIZE DURATION [WARMUP]   (seconds may be fractional)
 * Exits 1 if any connection fails, so a broken server never passes for a slow one.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define SCRATCH (256 * 1024)

struct conn {
    int fd;
    size_t sent; /* bytes of the current message sent */
    size_t got;  /* bytes of its echo received */
};

static size_t msg_size;
static char *msg;
static char scratch[SCRATCH];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what)
{
    fprintf(stderr, "epoll_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double number(const char *text, const char *name)
{
    char *end;
    double v = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || v < 0) {
        fprintf(stderr, "epoll_load: bad %s: %s\n", name, text);
        exit(2);
    }
    return v;
}

/* Sends as much of the current message as the socket takes; waits for EPOLLOUT if not all. */
static void send_more(int ep, struct conn *c)
{
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, msg + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                die("send");
            break;
        }
        c->sent += (size_t)n;
    }
    uint32_t want = c->sent < msg_size ? EPOLLIN | EPOLLOUT : EPOLLIN;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

/* Reads what has arrived; returns 1 when a whole echo is in and the next message is sent. */
static int receive(int ep, struct conn *c)
{
    size_t want = msg_size - c->got;
    ssize_t n = recv(c->fd, scratch, want < SCRATCH ? want : SCRATCH, 0);
    if (n == 0) {
        fprintf(stderr, "epoll_load: server closed a connection\n");
        exit(1);
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        die("recv");
    }
    c->got += (size_t)n;
    if (c->got < msg_size)
        return 0;
    c->got = c->sent = 0;
    send_more(ep, c);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: epoll_load HOST PORT CONNS SIZE DURATION [WARMUP]\n");
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET};
    double port = number(argv[2], "port");
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 || port < 1 || port > 65535) {
        fprintf(stderr, "epoll_load: bad address %s %s\n", argv[1], argv[2]);
        return 2;
    }
    addr.sin_port = htons((uint16_t)port);
    int conns = (int)number(argv[3], "CONNS");
    msg_size = (size_t)number(argv[4], "SIZE");
    double duration = number(argv[5], "DURATION");
    double warmup = argc == 7 ? number(argv[6], "WARMUP") : 0;
    if (conns < 1 || msg_size < 1) {
        fprintf(stderr, "epoll_load: CONNS and SIZE must be at least 1\n");
        return 2;
    }

    msg = malloc(msg_size);
    struct conn *all = calloc((size_t)conns, sizeof *all);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (msg == NULL || all == NULL || ep < 0)
        die("setup");
    for (size_t i = 0; i < msg_size; i++)
        msg[i] = (char)('a' + i % 26);

    /* Connect all first (blocking, loopback is quick), then start every connection at once. */
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
            die("connect");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
            die("fcntl");
        all[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &all[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
    }
    for (int i = 0; i < conns; i++)
        send_more(ep, &all[i]);

    double start = now();
    double measure_from = start + warmup, measure_to = measure_from + duration;
    int measuring = warmup <= 0;
    double cpu_from = cpu_seconds();
    long long messages = 0;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        int done = 0;
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (events[i].events & EPOLLERR) {
                errno = ECONNRESET;
                die("connection");
            }
            if (events[i].events & EPOLLOUT)
                send_more(ep, c);
            if (events[i].events & (EPOLLIN | EPOLLHUP))
                done += receive(ep, c);
        }
        double t = now();
        if (!measuring && t >= measure_from) {
            measuring = 1;
            measure_from = t;
            measure_to = t + duration;
            cpu_from = cpu_seconds();
        } else if (measuring) {
            messages += done;
            if (t >= measure_to) {
                double elapsed = t - measure_from;
                printf("{\"msgs_per_s\":%.1f,\"client_cpu_s\":%.3f,\"messages\":%lld,"
                       "\"duration_s\":%.3f}\n",
                       (double)messages / elapsed, cpu_seconds() - cpu_from, messages, elapsed);
                return 0;
            }
        }
    }
}
