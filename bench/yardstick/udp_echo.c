/*
 * udp_echo: the yardstick UDP echo server for bench/compare.py. The naive loop on purpose:
 * one thread, a blocking socket, recvfrom into a 64 KiB buffer, sendto back to the sender. Its
 * only setting is larger socket buffers, as sockecho asks for.
 *
 * Usage: udp_echo [HOST] PORT      (HOST defaults to 127.0.0.1; PORT 0 picks a free port)
 * Prints "listening on udp://HOST:PORT" on stderr once ready; exits 0 on SIGINT or SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: udp_echo [HOST] PORT\n");
        return 2;
    }
    const char *host = argc == 3 ? argv[1] : "127.0.0.1";
    const char *port_text = argv[argc - 1];
    char *end;
    long port = strtol(port_text, &end, 10);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (*port_text == '\0' || *end != '\0' || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "udp_echo: bad address %s %s\n", host, port_text);
        return 2;
    }

    /* No SA_RESTART: the signal must interrupt recvfrom so the loop sees `stop`. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        fprintf(stderr, "udp_echo: cannot bind %s:%s: %s\n", host, port_text, strerror(errno));
        return 1;
    }
    /* The socket buffers `sockecho serve` asks for (capped by net.core.rmem_max / wmem_max), so
     * a pipelined load measures the loop, not drops from the default 208 KiB queue. */
    int buffer = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    fprintf(stderr, "listening on udp://%s:%u\n", host, ntohs(addr.sin_port));

    static char buf[64 * 1024];
    while (!stop) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
        if (n < 0) {
            if (errno != EINTR)
                perror("recvfrom"); /* e.g. ICMP errors from earlier replies: go on */
            continue;
        }
        /* A lost reply is the client's problem, as UDP intends. */
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len);
    }
    close(fd);
    return 0;
}
