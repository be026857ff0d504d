/* crailpy's RDMA data path; see crail_rdma.h for what each call does. */

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "crail_rdma.h"

#define MAX_RD_ATOMIC 16 /* RDMA READs in flight per queue pair, if the device allows */
#define MAX_POLL 32
#define MAX_POST 64 /* work requests chained per ibv_post_send */

struct crail_mr {
    struct ibv_mr *mr;
};

/* A connection the listener accepted; it only needs tearing down. */
struct peer {
    struct rdma_cm_id *id;
    struct ibv_cq *cq;
    int established;
    struct peer *next;
};

struct crail_listener {
    struct rdma_event_channel *events;
    struct rdma_cm_id *id;
    struct ibv_context *verbs;
    struct ibv_pd *pd;
    int rd_atomic;
    int connections;
    struct peer *peers;
};

struct crail_conn {
    struct rdma_event_channel *events;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_comp_channel *channel;
    struct ibv_cq *cq;
    char *scratch;          /* CRAIL_SCRATCH bytes and a fence byte, for crail_transfer */
    crail_mr *scratch_mr;
    /* Held while posting and polling: crail_transfer only tries it, and crail_close
     * waits for it. `posted`: signaled requests whose completions are still to come. */
    pthread_mutex_t lock;
    int posted;
    int connected;
    int failed;
    int closed;             /* by crail_close; crail_free frees the struct itself */
};

static void fail(char *err, int errlen, const char *fmt, ...)
{
    va_list args;
    if (err == NULL || errlen <= 0)
        return;
    va_start(args, fmt);
    vsnprintf(err, (size_t)errlen, fmt, args);
    va_end(args);
}

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* One protection domain per device for the whole process, so that a buffer
 * registered once serves every connection on that device. They live as long
 * as the process. */
static pthread_mutex_t pd_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { struct ibv_context *verbs; struct ibv_pd *pd; } pds[16];
static int npds;

static struct ibv_pd *shared_pd(struct ibv_context *verbs)
{
    struct ibv_pd *pd = NULL;
    pthread_mutex_lock(&pd_lock);
    for (int i = 0; i < npds; i++)
        if (pds[i].verbs == verbs)
            pd = pds[i].pd;
    if (pd == NULL && npds < (int)(sizeof pds / sizeof pds[0])) {
        pd = ibv_alloc_pd(verbs);
        if (pd != NULL) {
            pds[npds].verbs = verbs;
            pds[npds++].pd = pd;
        }
    }
    pthread_mutex_unlock(&pd_lock);
    return pd;
}

static int resolve(const char *host, int port, struct sockaddr_storage *out, char *err, int errlen)
{
    struct addrinfo hints = {0}, *res;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        fail(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* Resolve `host:port` into `addr` and make an event channel and an id to use it with. */
static int open_id(const char *host, int port, struct sockaddr_storage *addr,
                   struct rdma_event_channel **events, struct rdma_cm_id **id, void *context,
                   char *err, int errlen)
{
    if (resolve(host, port, addr, err, errlen) != 0)
        return -1;
    *events = rdma_create_event_channel();
    if (*events == NULL || set_nonblocking((*events)->fd) != 0) {
        fail(err, errlen, "rdma_create_event_channel: %s", strerror(errno));
        return -1;
    }
    if (rdma_create_id(*events, id, context, RDMA_PS_TCP) != 0) {
        fail(err, errlen, "rdma_create_id: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The next connection-manager event, waiting up to `timeout_ms`; NULL on timeout or error. */
static struct rdma_cm_event *next_event(struct rdma_event_channel *events, int timeout_ms)
{
    struct pollfd p = {.fd = events->fd, .events = POLLIN};
    struct rdma_cm_event *event;
    int rc = poll(&p, 1, timeout_ms);
    if (rc <= 0) {
        errno = rc == 0 ? ETIMEDOUT : errno;
        return NULL;
    }
    return rdma_get_cm_event(events, &event) == 0 ? event : NULL;
}

static int expect_event(struct crail_conn *conn, enum rdma_cm_event_type want, int timeout_ms,
                        const char *what, char *err, int errlen)
{
    struct rdma_cm_event *event = next_event(conn->events, timeout_ms);
    if (event == NULL) {
        fail(err, errlen, "%s: %s", what, strerror(errno));
        return -1;
    }
    enum rdma_cm_event_type got = event->event;
    int status = event->status;
    rdma_ack_cm_event(event);
    if (got != want) {
        fail(err, errlen, "%s: %s (status %d)", what, rdma_event_str(got), status);
        return -1;
    }
    return 0;
}

const char *crail_status_str(int status)
{
    return ibv_wc_status_str((enum ibv_wc_status)status);
}

int crail_devices(void)
{
    int n = 0;
    struct ibv_context **devices = rdma_get_devices(&n);
    if (devices != NULL)
        rdma_free_devices(devices);
    return n;
}

static crail_mr *register_memory(struct ibv_pd *pd, void *addr, size_t length, int access,
                                 char *err, int errlen)
{
    crail_mr *handle = calloc(1, sizeof *handle);
    if (handle == NULL) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    handle->mr = ibv_reg_mr(pd, addr, length, access);
    if (handle->mr == NULL) {
        fail(err, errlen, "ibv_reg_mr of %zu bytes: %s", length, strerror(errno));
        free(handle);
        return NULL;
    }
    return handle;
}

uint32_t crail_mr_lkey(crail_mr *mr) { return mr->mr->lkey; }
uint32_t crail_mr_rkey(crail_mr *mr) { return mr->mr->rkey; }
uint64_t crail_mr_addr(crail_mr *mr) { return (uint64_t)(uintptr_t)mr->mr->addr; }

void crail_deregister(crail_mr *mr)
{
    if (mr == NULL)
        return;
    ibv_dereg_mr(mr->mr);
    free(mr);
}

/* ---- the listener ---- */

crail_listener *crail_listen(const char *host, int port, char *err, int errlen)
{
    struct sockaddr_storage addr;
    struct ibv_device_attr attr;
    crail_listener *l = calloc(1, sizeof *l);
    if (l == NULL) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    if (open_id(host, port, &addr, &l->events, &l->id, l, err, errlen) != 0)
        goto error;
    if (rdma_bind_addr(l->id, (struct sockaddr *)&addr) != 0) {
        fail(err, errlen, "rdma_bind_addr %s:%d: %s", host, port, strerror(errno));
        goto error;
    }
    if (rdma_listen(l->id, 128) != 0) {
        fail(err, errlen, "rdma_listen: %s", strerror(errno));
        goto error;
    }
    l->verbs = l->id->verbs;
    if (l->verbs == NULL) { /* bound to a wildcard address: serve the first device */
        int n = 0;
        struct ibv_context **devices = rdma_get_devices(&n);
        if (devices != NULL && n > 0)
            l->verbs = devices[0];
        if (devices != NULL)
            rdma_free_devices(devices);
    }
    if (l->verbs == NULL) {
        fail(err, errlen, "no RDMA device serves %s", host);
        goto error;
    }
    l->pd = shared_pd(l->verbs);
    if (l->pd == NULL || ibv_query_device(l->verbs, &attr) != 0) {
        fail(err, errlen, "cannot use device %s: %s", ibv_get_device_name(l->verbs->device),
             strerror(errno));
        goto error;
    }
    l->rd_atomic = attr.max_qp_rd_atom < MAX_RD_ATOMIC ? attr.max_qp_rd_atom : MAX_RD_ATOMIC;
    return l;
error:
    crail_listener_close(l);
    return NULL;
}

int crail_listener_port(crail_listener *l) { return ntohs(rdma_get_src_port(l->id)); }

const char *crail_listener_device(crail_listener *l) { return ibv_get_device_name(l->verbs->device); }

crail_mr *crail_listener_register(crail_listener *l, void *addr, size_t length, char *err, int errlen)
{
    int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
    return register_memory(l->pd, addr, length, access, err, errlen);
}

static void drop_peer(crail_listener *l, struct rdma_cm_id *id)
{
    struct peer **link = &l->peers;
    while (*link != NULL && (*link)->id != id)
        link = &(*link)->next;
    struct peer *p = *link;
    if (p == NULL)
        return;
    *link = p->next;
    if (p->established)
        l->connections--;
    if (id->qp != NULL)
        rdma_destroy_qp(id);
    if (p->cq != NULL)
        ibv_destroy_cq(p->cq);
    rdma_destroy_id(id);
    free(p);
}

/* A client asks to connect: give it a queue pair in the pool's protection
 * domain and accept. It posts nothing to us; its READs and WRITEs are served
 * by the device. */
static void accept_peer(crail_listener *l, struct rdma_cm_id *id, const struct rdma_conn_param *asked)
{
    struct ibv_qp_init_attr qp = {0};
    struct rdma_conn_param param = {0};
    struct peer *p = calloc(1, sizeof *p);
    if (p == NULL || id->verbs != l->verbs) {
        free(p);
        rdma_reject(id, NULL, 0);
        rdma_destroy_id(id);
        return;
    }
    p->id = id;
    p->next = l->peers;
    l->peers = p;
    p->cq = ibv_create_cq(id->verbs, 2, NULL, NULL, 0);
    qp.send_cq = qp.recv_cq = p->cq;
    qp.qp_type = IBV_QPT_RC;
    qp.cap.max_send_wr = qp.cap.max_recv_wr = 1;
    qp.cap.max_send_sge = qp.cap.max_recv_sge = 1;
    if (p->cq == NULL || rdma_create_qp(id, l->pd, &qp) != 0) {
        rdma_reject(id, NULL, 0);
        drop_peer(l, id);
        return;
    }
    /* The event's values are the peer's, seen from our side: its initiator depth
     * arrives as `responder_resources`, the READs it will have in flight. */
    param.responder_resources = asked->responder_resources < l->rd_atomic
                                    ? asked->responder_resources : l->rd_atomic;
    param.initiator_depth = 0;
    param.rnr_retry_count = 7;
    if (rdma_accept(id, &param) != 0)
        drop_peer(l, id);
}

int crail_listener_serve(crail_listener *l, int timeout_ms, char *err, int errlen)
{
    struct rdma_cm_event *event = next_event(l->events, timeout_ms);
    int why = errno;
    while (event != NULL) {
        struct rdma_cm_id *id = event->id;
        struct rdma_conn_param asked = event->param.conn;
        enum rdma_cm_event_type type = event->event;
        rdma_ack_cm_event(event);
        switch (type) {
        case RDMA_CM_EVENT_CONNECT_REQUEST:
            accept_peer(l, id, &asked);
            break;
        case RDMA_CM_EVENT_ESTABLISHED:
            for (struct peer *p = l->peers; p != NULL; p = p->next)
                if (p->id == id && !p->established) {
                    p->established = 1;
                    l->connections++;
                }
            break;
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_CONNECT_ERROR:
        case RDMA_CM_EVENT_UNREACHABLE:
        case RDMA_CM_EVENT_REJECTED:
            if (id != l->id)
                drop_peer(l, id);
            break;
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
            fail(err, errlen, "the RDMA device was removed");
            return -1;
        default:
            break;
        }
        if (rdma_get_cm_event(l->events, &event) != 0) {
            why = errno;
            event = NULL;
        }
    }
    if (why != ETIMEDOUT && why != EAGAIN && why != EINTR) {
        fail(err, errlen, "rdma_get_cm_event: %s", strerror(why));
        return -1;
    }
    return l->connections;
}

void crail_listener_close(crail_listener *l)
{
    if (l == NULL)
        return;
    while (l->peers != NULL)
        drop_peer(l, l->peers->id);
    if (l->id != NULL)
        rdma_destroy_id(l->id);
    if (l->events != NULL)
        rdma_destroy_event_channel(l->events);
    free(l);
}

/* ---- the client ---- */

crail_conn *crail_connect(const char *host, int port, int depth, int timeout_ms, char *err, int errlen)
{
    struct sockaddr_storage addr;
    struct ibv_device_attr attr;
    struct ibv_qp_init_attr qp = {0};
    struct rdma_conn_param param = {0};
    crail_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    if (open_id(host, port, &addr, &c->events, &c->id, c, err, errlen) != 0)
        goto error;
    if (rdma_resolve_addr(c->id, NULL, (struct sockaddr *)&addr, timeout_ms) != 0) {
        fail(err, errlen, "rdma_resolve_addr %s: %s", host, strerror(errno));
        goto error;
    }
    if (expect_event(c, RDMA_CM_EVENT_ADDR_RESOLVED, timeout_ms, "resolving the address", err, errlen))
        goto error;
    if (rdma_resolve_route(c->id, timeout_ms) != 0) {
        fail(err, errlen, "rdma_resolve_route: %s", strerror(errno));
        goto error;
    }
    if (expect_event(c, RDMA_CM_EVENT_ROUTE_RESOLVED, timeout_ms, "resolving the route", err, errlen))
        goto error;
    c->pd = shared_pd(c->id->verbs);
    c->channel = ibv_create_comp_channel(c->id->verbs);
    if (c->pd == NULL || c->channel == NULL || set_nonblocking(c->channel->fd) != 0) {
        fail(err, errlen, "cannot use device %s: %s", ibv_get_device_name(c->id->verbs->device),
             strerror(errno));
        goto error;
    }
    /* Each operation may bring a fencing READ with it: room for two per slot. */
    c->cq = ibv_create_cq(c->id->verbs, 2 * depth + 2, c, c->channel, 0);
    if (c->cq == NULL) {
        fail(err, errlen, "ibv_create_cq: %s", strerror(errno));
        goto error;
    }
    qp.send_cq = qp.recv_cq = c->cq;
    qp.qp_type = IBV_QPT_RC;
    qp.cap.max_send_wr = 2 * depth + 2;
    qp.cap.max_recv_wr = 1;
    qp.cap.max_send_sge = qp.cap.max_recv_sge = 1;
    if (rdma_create_qp(c->id, c->pd, &qp) != 0) {
        fail(err, errlen, "rdma_create_qp: %s", strerror(errno));
        goto error;
    }
    if (ibv_query_device(c->id->verbs, &attr) != 0) {
        fail(err, errlen, "ibv_query_device: %s", strerror(errno));
        goto error;
    }
    param.initiator_depth = attr.max_qp_init_rd_atom < MAX_RD_ATOMIC ? attr.max_qp_init_rd_atom
                                                                    : MAX_RD_ATOMIC;
    param.responder_resources = 0;
    param.retry_count = 7;
    param.rnr_retry_count = 7;
    if (rdma_connect(c->id, &param) != 0) {
        fail(err, errlen, "rdma_connect: %s", strerror(errno));
        goto error;
    }
    if (expect_event(c, RDMA_CM_EVENT_ESTABLISHED, timeout_ms, "connecting", err, errlen))
        goto error;
    c->scratch = malloc(CRAIL_SCRATCH + 1);
    if (c->scratch == NULL) {
        fail(err, errlen, "out of memory");
        goto error;
    }
    c->scratch_mr = register_memory(c->pd, c->scratch, CRAIL_SCRATCH + 1, IBV_ACCESS_LOCAL_WRITE,
                                    err, errlen);
    if (c->scratch_mr == NULL)
        goto error;
    c->connected = 1;
    return c;
error:
    crail_close(c);
    crail_free(c);
    return NULL;
}

const char *crail_conn_device(crail_conn *c) { return ibv_get_device_name(c->id->verbs->device); }

crail_mr *crail_register(crail_conn *c, void *addr, size_t length, int writable, char *err, int errlen)
{
    return register_memory(c->pd, addr, length, writable ? IBV_ACCESS_LOCAL_WRITE : 0, err, errlen);
}

static int post(crail_conn *c, const crail_op *ops, int n, char *err, int errlen)
{
    struct ibv_send_wr wrs[MAX_POST], *bad = NULL;
    struct ibv_sge sges[MAX_POST];
    for (int i = 0; i < n; i++) {
        sges[i].addr = ops[i].local;
        sges[i].length = ops[i].length;
        sges[i].lkey = ops[i].lkey;
        memset(&wrs[i], 0, sizeof wrs[i]);
        wrs[i].wr_id = ops[i].id;
        wrs[i].sg_list = &sges[i];
        wrs[i].num_sge = ops[i].length ? 1 : 0;
        wrs[i].opcode = ops[i].write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
        wrs[i].send_flags = ops[i].signaled ? IBV_SEND_SIGNALED : 0;
        wrs[i].wr.rdma.remote_addr = ops[i].remote;
        wrs[i].wr.rdma.rkey = ops[i].rkey;
        wrs[i].next = i + 1 < n ? &wrs[i + 1] : NULL;
    }
    int rc = ibv_post_send(c->id->qp, wrs, &bad);
    for (int i = 0; i < n && &wrs[i] != bad; i++)
        c->posted += ops[i].signaled;
    if (rc != 0) {
        c->failed = 1; /* the caller gives the connection up, and some may have been posted */
        fail(err, errlen, "ibv_post_send: %s", strerror(rc));
        return -1;
    }
    return 0;
}

static int poll_cq(crail_conn *c, crail_completion *out, int max, int timeout_ms, int spin_us,
                   char *err, int errlen);

int crail_post_poll(crail_conn *c, const crail_op *ops, int n, crail_completion *out, int max,
                    int timeout_ms, int spin_us, char *err, int errlen)
{
    int result = -1;
    pthread_mutex_lock(&c->lock);
    if (c->closed) {
        fail(err, errlen, "the connection is closed");
        goto out;
    }
    for (int done = 0; done < n; done += MAX_POST)
        if (post(c, ops + done, n - done < MAX_POST ? n - done : MAX_POST, err, errlen) != 0)
            goto out;
    result = poll_cq(c, out, max, timeout_ms, spin_us, err, errlen);
out:
    pthread_mutex_unlock(&c->lock);
    return result;
}

static int poll_cq(crail_conn *c, crail_completion *out, int max, int timeout_ms, int spin_us,
                   char *err, int errlen)
{
    struct ibv_wc wc[MAX_POLL];
    double start = now_us();
    int armed = 0;
    if (max > MAX_POLL)
        max = MAX_POLL;
    for (;;) {
        int n = ibv_poll_cq(c->cq, max, wc);
        if (n < 0) {
            fail(err, errlen, "ibv_poll_cq failed");
            return -1;
        }
        if (n > 0) {
            /* flushed unsignaled requests complete too, but only on a failed queue pair */
            c->posted = c->posted > n ? c->posted - n : 0;
            for (int i = 0; i < n; i++) {
                out[i].id = wc[i].wr_id;
                out[i].status = wc[i].status;
                if (wc[i].status != IBV_WC_SUCCESS)
                    c->failed = 1;
            }
            return n;
        }
        double waited = now_us() - start;
        if (waited < spin_us)
            continue;
        if (!armed) { /* arm, then look once more: a completion may have come in between */
            if (ibv_req_notify_cq(c->cq, 0) != 0) {
                fail(err, errlen, "ibv_req_notify_cq failed");
                return -1;
            }
            armed = 1;
            continue;
        }
        int remaining = timeout_ms - (int)(waited / 1000);
        if (remaining <= 0)
            return 0;
        struct pollfd p = {.fd = c->channel->fd, .events = POLLIN};
        if (poll(&p, 1, remaining) > 0) {
            struct ibv_cq *cq;
            void *context;
            if (ibv_get_cq_event(c->channel, &cq, &context) == 0)
                ibv_ack_cq_events(cq, 1);
            armed = 0;
        }
    }
}

/* crail_transfer's work request ids: the Python side counts its own from 1. */
#define TRANSFER_ID UINT64_MAX
#define TRANSFER_DATA_ID (UINT64_MAX - 1)

static int transfer(crail_conn *c, void *data, uint32_t length, uint64_t remote, uint32_t rkey,
                    int write, int timeout_ms, int spin_us, char *err, int errlen)
{
    uint32_t lkey = crail_mr_lkey(c->scratch_mr);
    uint64_t scratch = (uint64_t)(uintptr_t)c->scratch;
    int fence = write == CRAIL_WRITE_PLACED;
    crail_op ops[2] = {
        {.id = fence ? TRANSFER_DATA_ID : TRANSFER_ID, .local = scratch, .remote = remote,
         .lkey = lkey, .rkey = rkey, .length = length, .write = (uint8_t)(write != 0),
         .signaled = !fence},
        /* the fence: its answer leaves the datanode only once the WRITE is in its memory */
        {.id = TRANSFER_ID, .local = scratch + CRAIL_SCRATCH, .remote = remote + length - 1,
         .lkey = lkey, .rkey = rkey, .length = 1, .write = 0, .signaled = 1},
    };
    crail_completion done[MAX_POLL];
    int status = 0;
    double deadline = now_us() + timeout_ms * 1e3;
    if (write)
        memcpy(c->scratch, data, length);
    if (post(c, ops, fence ? 2 : 1, err, errlen) != 0)
        return -1;
    for (;;) { /* until the last request's completion, which comes, flushed, after any failure */
        int left = (int)((deadline - now_us()) / 1e3);
        int n = poll_cq(c, done, MAX_POLL, left < 200 ? left : 200, spin_us, err, errlen);
        if (n == 0 && crail_conn_failed(c)) {
            n = poll_cq(c, done, MAX_POLL, 200, 0, err, errlen); /* the flushed requests */
            if (n == 0) {
                fail(err, errlen, "the connection failed");
                return -1;
            }
        }
        if (n < 0)
            return -1;
        for (int i = 0; i < n; i++) {
            if (done[i].id != TRANSFER_ID && done[i].id != TRANSFER_DATA_ID)
                continue;
            if (status == 0)
                status = done[i].status;
            if (done[i].id == TRANSFER_ID) {
                if (status == 0 && !write)
                    memcpy(data, c->scratch, length);
                return status;
            }
        }
        if (n == 0 && left <= 0)
            return -2;
    }
}

int crail_transfer(crail_conn *c, void *data, uint32_t length, uint64_t remote, uint32_t rkey,
                   int write, int timeout_ms, int spin_us, char *err, int errlen)
{
    if (c == NULL) {
        fail(err, errlen, "the connection is closed");
        return -1;
    }
    if (length == 0 || length > CRAIL_SCRATCH || pthread_mutex_trylock(&c->lock) != 0)
        return CRAIL_NOT_NOW;
    int status = CRAIL_NOT_NOW;
    if (c->closed || c->failed) {
        fail(err, errlen, c->closed ? "the connection is closed" : "the connection failed");
        status = -1;
    } else if (c->posted == 0) { /* else another's completions would come to this poll */
        status = transfer(c, data, length, remote, rkey, write, timeout_ms, spin_us, err, errlen);
    }
    pthread_mutex_unlock(&c->lock);
    return status;
}

int crail_conn_failed(crail_conn *c)
{
    struct rdma_cm_event *event;
    if (c->closed)
        return 1;
    while (rdma_get_cm_event(c->events, &event) == 0) {
        if (event->event == RDMA_CM_EVENT_DISCONNECTED || event->event == RDMA_CM_EVENT_DEVICE_REMOVAL)
            c->failed = 1;
        rdma_ack_cm_event(event);
    }
    return c->failed;
}

void crail_close(crail_conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock); /* after a crail_transfer under way, before the next */
    if (!c->closed) {
        c->closed = 1;
        if (c->connected)
            rdma_disconnect(c->id);
        if (c->id != NULL && c->id->qp != NULL)
            rdma_destroy_qp(c->id);
        if (c->cq != NULL)
            ibv_destroy_cq(c->cq);
        if (c->channel != NULL)
            ibv_destroy_comp_channel(c->channel);
        if (c->id != NULL)
            rdma_destroy_id(c->id);
        if (c->events != NULL)
            rdma_destroy_event_channel(c->events);
        crail_deregister(c->scratch_mr);
        free(c->scratch);
    }
    pthread_mutex_unlock(&c->lock);
}

void crail_free(crail_conn *c)
{
    /* One never closed is left as it is: tearing a queue pair down from Python's
     * garbage collector, at any moment in any thread, is not safe to do. */
    if (c == NULL || !c->closed)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c);
}
