/*
 * epoll_load: the yardstick closed-loop TCP load generator for bench/compare.py.
 *
 * Steady mode (the default): CONNS connections each send a SIZE-byte message, wait until all
 * SIZE bytes have come back, and send the next, as fast as the server allows. One thread,
 * level-triggered epoll, non-blocking sockets: it writes what the socket takes and reads what
 * has arrived. Every echoed byte is compared with what was sent (memcmp against the message,
 * which starts at a different letter on neighbouring connections, so crossed streams show).
 *
 * Churn mode (--churn): CONNS slots each open a connection (non-blocking connect, from the
 * --source addresses in turn), exchange --messages-per-conn messages (default 1), close it
 * (the client first: an orderly FIN, the client keeping TIME_WAIT) and open the next at once.
 *
 * After WARMUP seconds it counts for DURATION seconds, then prints one JSON line on stdout:
 *   {"msgs_per_s":..,"client_cpu_s":..,"messages":..,"duration_s":..}
 * where client_cpu_s is this process's user+system time during the measured period. In churn
 * mode the line also has, in the shape of `sockecho bench --json`,
 *   "churn":{"connections_per_s":..,"connections_opened":..,"connect_us":{..},
 *            "connect_errors":{"ECONNREFUSED":..}},"errors":{..},"ok":true|false
 * where connections_opened counts the connections that finished their whole cycle (echoes
 * verified, closed) in the measured period and connect_us times each connect from socket()
 * until the socket was writable.
 *
 * Usage: epoll_load [--churn] [--messages-per-conn N] [--source ADDRS]
 *                   HOST PORT CONNS SIZE DURATION [WARMUP]          (seconds may be fractional)
 * ADDRS is a list of IPv4 addresses and ranges, such as 127.0.0.2-127.0.0.65,127.1.0.1.
 * Exits 1 if any connection fails (in churn mode after printing the report with the failures
 * counted), so a broken server never passes for a slow one; 2 on a usage error. Every wait is
 * bounded: the run ends WARMUP + DURATION seconds after the connections are open.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_EVENTS 256
#define SCRATCH (256 * 1024)
/* Neighbouring connections' messages start this many letters apart (the alphabet's length). */
#define ROTATIONS 26
#define MAX_SOURCES 65536
#define MAX_ERRNO 256
/* Connect-time histogram: exact below 64 ns, then 32 buckets per power of two (~3 %). */
#define HIST_BUCKETS (64 + 40 * 32)

struct conn {
    int fd;            /* -1 while a churn slot waits to open its next connection */
    int connecting;    /* churn: connect() issued, not yet writable */
    const char *base;  /* this connection's message: a rotation of the shared pattern */
    size_t sent;       /* bytes of the current message sent */
    size_t got;        /* bytes of its echo received */
    long echoes;       /* echoes completed on this connection (churn) */
    double started;    /* churn: when this connection's socket() was called */
};

static size_t msg_size;
static char *msg;
static char scratch[SCRATCH];
static int churn;
static long messages_per_conn = 1;
static struct sockaddr_in server;
static struct in_addr *sources;
static size_t nsources, next_source;

/* Churn failures: connect errors by errno, and what went wrong after a connection opened. */
static long long connect_errors[MAX_ERRNO];
static long long disconnected, mismatched;
static long long hist[HIST_BUCKETS];

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

static void usage(void)
{
    fprintf(stderr, "usage: epoll_load [--churn] [--messages-per-conn N] [--source ADDRS] "
                    "HOST PORT CONNS SIZE DURATION [WARMUP]\n");
    exit(2);
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

static uint32_t ipv4(const char *text, size_t len)
{
    char buf[INET_ADDRSTRLEN];
    struct in_addr a;
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, &a) != 1) {
        fprintf(stderr, "epoll_load: bad source address %s\n", buf);
        exit(2);
    }
    return ntohl(a.s_addr);
}

/* Parses "A,B-C,...": addresses and inclusive ranges, in the order given. */
static void parse_sources(const char *text)
{
    sources = calloc(MAX_SOURCES, sizeof *sources);
    if (sources == NULL)
        die("calloc");
    while (*text) {
        size_t item = strcspn(text, ",");
        const char *dash = memchr(text, '-', item);
        uint32_t lo = ipv4(text, dash ? (size_t)(dash - text) : item);
        uint32_t hi = dash ? ipv4(dash + 1, item - (size_t)(dash + 1 - text)) : lo;
        if (hi < lo || nsources + (hi - lo) >= MAX_SOURCES) {
            fprintf(stderr, "epoll_load: bad or too large source range in %s\n", text);
            exit(2);
        }
        for (uint64_t a = lo; a <= hi; a++)
            sources[nsources++].s_addr = htonl((uint32_t)a);
        text += item + (text[item] == ',');
    }
}

static size_t bucket(uint64_t ns)
{
    if (ns < 64)
        return (size_t)ns;
    int msb = 63 - __builtin_clzll(ns);
    int shift = msb - 5; /* ns >> shift is in [32, 64) */
    size_t i = 64 + (size_t)(shift - 1) * 32 + (size_t)((ns >> shift) - 32);
    return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

/* The upper bound of a bucket, in nanoseconds: a percentile never reads low. */
static double bucket_top(size_t i)
{
    if (i < 64)
        return (double)i;
    size_t shift = (i - 64) / 32 + 1, top = (i - 64) % 32 + 32;
    return (double)(((uint64_t)top + 1) << shift) - 1;
}

static double percentile_us(long long count, double p)
{
    long long rank = (long long)(p * (double)count + 0.999999), seen = 0;
    if (rank < 1)
        rank = 1;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank)
            return bucket_top(i) / 1e3;
    }
    return 0;
}

/* Ends a churn connection that went wrong; the slot opens a new one on the next turn. */
static void drop(struct conn *c)
{
    close(c->fd);
    c->fd = -1;
}

/* A steady connection that goes wrong ends the run; a churn one is counted and replaced. */
static void broken(struct conn *c, const char *what, long long *counter)
{
    if (!churn) {
        fprintf(stderr, "epoll_load: %s\n", what);
        exit(1);
    }
    (*counter)++;
    drop(c);
}

static void set_events(int ep, struct conn *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0)
        die("epoll_ctl");
}

/* Sends as much of the current message as the socket takes; waits for EPOLLOUT if not all. */
static void send_more(int ep, struct conn *c)
{
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, c->base + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                broken(c, "send failed (server closed or reset the connection)",
                       &disconnected);
                return;
            }
            break;
        }
        c->sent += (size_t)n;
    }
    set_events(ep, c, EPOLL_CTL_MOD, c->sent < msg_size ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* Churn: starts a slot's next connection. A failure here is counted and retried next turn. */
static void churn_open(int ep, struct conn *c)
{
    c->started = now();
    c->sent = c->got = 0;
    c->echoes = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    if (nsources > 0) {
        /* The port is picked at connect(), per destination, not at bind() from the address's
         * whole range: without this, one source address runs out of ports far sooner. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in local = {.sin_family = AF_INET,
                                    .sin_addr = sources[next_source++ % nsources]};
        if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
            connect_errors[errno < MAX_ERRNO ? errno : 0]++;
            close(fd);
            return;
        }
    }
    /* Only worth its system call with more than one message: a connection's first write
     * never waits for an ACK. */
    if (messages_per_conn > 1)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS) {
        connect_errors[errno < MAX_ERRNO ? errno : 0]++;
        close(fd);
        return;
    }
    c->fd = fd;
    c->connecting = 1;
    set_events(ep, c, EPOLL_CTL_ADD, EPOLLOUT);
}

/* Churn: the connect finished, one way or the other. Returns 1 if it opened. */
static int churn_connected(int ep, struct conn *c, uint32_t events, int measuring)
{
    c->connecting = 0;
    if (events & (EPOLLERR | EPOLLHUP)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        connect_errors[err > 0 && err < MAX_ERRNO ? err : 0]++;
        drop(c);
        return 0;
    }
    if (measuring)
        hist[bucket((uint64_t)((now() - c->started) * 1e9))]++;
    send_more(ep, c);
    return 1;
}

/* Reads what has arrived and checks it; returns 1 when a whole echo is in. It then sends the
 * next message or, in churn mode once the connection has had its messages, closes it. */
static int receive(int ep, struct conn *c, long long *cycles)
{
    size_t want = msg_size - c->got;
    ssize_t n = recv(c->fd, scratch, want < SCRATCH ? want : SCRATCH, 0);
    if (n == 0) {
        broken(c, "server closed a connection", &disconnected);
        return 0;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        broken(c, "recv failed (server reset the connection)", &disconnected);
        return 0;
    }
    if (memcmp(scratch, c->base + c->got, (size_t)n) != 0) {
        broken(c, "echo differs from the message sent", &mismatched);
        return 0;
    }
    c->got += (size_t)n;
    if (c->got < msg_size)
        return 0;
    c->got = c->sent = 0;
    if (churn && ++c->echoes >= messages_per_conn) {
        /* Nothing is left unread, so close() sends a FIN, not a reset. */
        drop(c);
        (*cycles)++;
        churn_open(ep, c);
        return 1;
    }
    send_more(ep, c);
    return 1;
}

static int report(long long messages, long long cycles, double elapsed, double cpu)
{
    printf("{\"msgs_per_s\":%.1f,\"client_cpu_s\":%.3f,\"messages\":%lld,\"duration_s\":%.3f",
           (double)messages / elapsed, cpu, messages, elapsed);
    if (!churn) {
        printf("}\n");
        return 0;
    }
    long long connects = 0, failed = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        connects += hist[i];
    printf(",\"churn\":{\"connections_per_s\":%.1f,\"connections_opened\":%lld,"
           "\"connect_us\":{\"count\":%lld,\"p50\":%.1f,\"p99\":%.1f},\"connect_errors\":{",
           (double)cycles / elapsed, cycles, connects, percentile_us(connects, 0.5),
           percentile_us(connects, 0.99));
    const char *sep = "";
    for (int e = 0; e < MAX_ERRNO; e++) {
        if (connect_errors[e] == 0)
            continue;
        const char *name = e ? strerrorname_np(e) : NULL;
        if (name)
            printf("%s\"%s\":%lld", sep, name, connect_errors[e]);
        else
            printf("%s\"errno %d\":%lld", sep, e, connect_errors[e]);
        sep = ",";
        failed += connect_errors[e];
    }
    failed += disconnected + mismatched;
    printf("}},\"errors\":{\"disconnected\":%lld,\"mismatched\":%lld},\"ok\":%s}\n", disconnected,
           mismatched, failed ? "false" : "true");
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"churn", no_argument, NULL, 'c'},
        {"messages-per-conn", required_argument, NULL, 'm'},
        {"source", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            churn = 1;
            break;
        case 'm':
            messages_per_conn = (long)number(optarg, "--messages-per-conn");
            break;
        case 's':
            parse_sources(optarg);
            break;
        default:
            usage();
        }
    }
    argc -= optind - 1;
    argv += optind - 1;
    if (argc != 6 && argc != 7)
        usage();
    server.sin_family = AF_INET;
    double port = number(argv[2], "port");
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1 || port < 1 || port > 65535) {
        fprintf(stderr, "epoll_load: bad address %s %s\n", argv[1], argv[2]);
        return 2;
    }
    server.sin_port = htons((uint16_t)port);
    int conns = (int)number(argv[3], "CONNS");
    msg_size = (size_t)number(argv[4], "SIZE");
    double duration = number(argv[5], "DURATION");
    double warmup = argc == 7 ? number(argv[6], "WARMUP") : 0;
    if (conns < 1 || msg_size < 1 || messages_per_conn < 1) {
        fprintf(stderr, "epoll_load: CONNS, SIZE and --messages-per-conn must be at least 1\n");
        return 2;
    }

    msg = malloc(msg_size + ROTATIONS);
    struct conn *all = calloc((size_t)conns, sizeof *all);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (msg == NULL || all == NULL || ep < 0)
        die("setup");
    for (size_t i = 0; i < msg_size + ROTATIONS; i++)
        msg[i] = (char)('a' + i % ROTATIONS);
    for (int i = 0; i < conns; i++) {
        all[i].fd = -1;
        all[i].base = msg + i % ROTATIONS;
    }

    if (churn) {
        for (int i = 0; i < conns; i++)
            churn_open(ep, &all[i]);
    } else {
        /* Connect all first (blocking, loopback is quick), then start every connection. */
        for (int i = 0; i < conns; i++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            int one = 1;
            if (fd < 0 || connect(fd, (struct sockaddr *)&server, sizeof server) < 0)
                die("connect");
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
                die("fcntl");
            all[i].fd = fd;
            set_events(ep, &all[i], EPOLL_CTL_ADD, EPOLLIN);
        }
        for (int i = 0; i < conns; i++)
            send_more(ep, &all[i]);
    }

    double start = now();
    double measure_from = start + warmup, measure_to = measure_from + duration;
    int measuring = warmup <= 0;
    double cpu_from = cpu_seconds();
    long long messages = 0, cycles = 0, ignored_cycles = 0;
    struct epoll_event events[MAX_EVENTS];
    int idle = 0; /* churn slots whose last open failed, to retry */
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, idle ? 1 : 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        int done = 0;
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            uint32_t ev = events[i].events;
            if (c->connecting) {
                churn_connected(ep, c, ev, measuring);
                continue;
            }
            if ((ev & EPOLLERR) && !(ev & EPOLLIN)) {
                broken(c, "connection failed (EPOLLERR)", &disconnected);
                continue;
            }
            if (ev & EPOLLOUT)
                send_more(ep, c);
            if (c->fd >= 0 && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                done += receive(ep, c, measuring ? &cycles : &ignored_cycles);
        }
        if (churn) {
            idle = 0;
            for (int i = 0; i < conns; i++) {
                if (all[i].fd < 0)
                    churn_open(ep, &all[i]);
                idle += all[i].fd < 0;
            }
        }
        double t = now();
        if (!measuring && t >= measure_from) {
            measuring = 1;
            measure_from = t;
            measure_to = t + duration;
            cpu_from = cpu_seconds();
        } else if (measuring) {
            messages += done;
            if (t >= measure_to)
                return report(messages, cycles, t - measure_from, cpu_seconds() - cpu_from);
        }
    }
}
