/* crailpy's RDMA data path: one-sided READ and WRITE over RC queue pairs set up
 * with RDMA CM. Bound to Python by cffi (native/build_rdma.py); this header is
 * also the cdef, so it holds only what cffi's parser reads.
 *
 * A listener (the datanode) registers its pool and accepts connections; it
 * never posts work, so its CPU does nothing per block. A connection (the
 * client) posts batches of READs and WRITEs against the pool and polls their
 * completions. Every call returns at once or waits in C with the GIL released
 * (cffi's default), so Python threads keep running while data moves.
 *
 * Errors: functions that can fail take `err` (a buffer of `errlen` bytes) and
 * write one line of text into it.
 */

typedef struct crail_listener crail_listener;
typedef struct crail_conn crail_conn;
typedef struct crail_mr crail_mr;

/* One work request: RDMA READ (write == 0) of `length` bytes from `remote`
 * into `local`, or RDMA WRITE (write == 1) of `local` to `remote`. */
typedef struct {
    uint64_t id;        /* the caller's tag, given back with the completion */
    uint64_t local;
    uint64_t remote;
    uint32_t lkey;
    uint32_t rkey;
    uint32_t length;
    uint8_t write;
    uint8_t signaled;   /* produce a completion (errors always do) */
} crail_op;

typedef struct {
    uint64_t id;
    int status;         /* enum ibv_wc_status: 0 is success */
} crail_completion;

/* ---- the datanode side ---- */
crail_listener *crail_listen(const char *host, int port, char *err, int errlen);
int crail_listener_port(crail_listener *listener);
const char *crail_listener_device(crail_listener *listener);
/* Register [addr, addr+length) for remote READ and WRITE by connected peers. */
crail_mr *crail_listener_register(crail_listener *listener, void *addr, size_t length,
                                  char *err, int errlen);
/* Handle connection events for up to `timeout_ms`; returns the number of live
 * connections, or -1 on error. */
int crail_listener_serve(crail_listener *listener, int timeout_ms, char *err, int errlen);
void crail_listener_close(crail_listener *listener);

/* ---- the client side ---- */
crail_conn *crail_connect(const char *host, int port, int depth, int timeout_ms,
                          char *err, int errlen);
const char *crail_conn_device(crail_conn *conn);
/* Register a local buffer; `writable`: RDMA READs land in it. */
crail_mr *crail_register(crail_conn *conn, void *addr, size_t length, int writable,
                         char *err, int errlen);
/* Post `n` operations (none is fine) with one doorbell per 64, then wait up to
 * `timeout_ms` for completions, polling for `spin_us` before sleeping: what a
 * caller about to wait does, in one call. Returns how many completions were
 * written to `out` (0 on timeout), -1 on error. */
int crail_post_poll(crail_conn *conn, const crail_op *ops, int n, crail_completion *out, int max,
                    int timeout_ms, int spin_us, char *err, int errlen);
/* Room in a connection's registered scratch buffer: what `crail_transfer` moves at most. */
#define CRAIL_SCRATCH 65536
/* What `crail_transfer` answers when it cannot go at once (see there). */
#define CRAIL_NOT_NOW -3
/* `crail_transfer`'s `write`: a WRITE done when the datanode's device acknowledged
 * it (1), or with the 1-byte READ behind it whose answer confirms its placement (2). */
#define CRAIL_WRITE 1
#define CRAIL_WRITE_PLACED 2
/* One transfer start to finish, for a caller that would wait at once: WRITE
 * `length` bytes of `data` to `remote`, through the connection's registered
 * scratch (write == CRAIL_WRITE or CRAIL_WRITE_PLACED), or READ them through
 * the scratch into `data` (write == 0). No registration, and
 * nothing returns to Python in between. Any thread may call it: it goes only
 * with the connection to itself (nothing else posted or polling, `length` from
 * 1 to CRAIL_SCRATCH) and answers CRAIL_NOT_NOW otherwise, having done
 * nothing. Returns 0 once done, the failed completion's status (enum
 * ibv_wc_status, above 0), -2 if `timeout_ms` passed, -1 on any other error
 * (a closed or failed connection among them). */
int crail_transfer(crail_conn *conn, void *data, uint32_t length, uint64_t remote, uint32_t rkey,
                   int write, int timeout_ms, int spin_us, char *err, int errlen);
/* The connection was closed by the peer or failed; posted work is flushed. */
int crail_conn_failed(crail_conn *conn);
/* Disconnect and free the queue pair and all it holds, once no call is under way
 * on it. The struct itself stays, so that a late call answers "closed". */
void crail_close(crail_conn *conn);
/* Free the struct of a closed connection, when nothing can call with it any more;
 * one never closed is left alone (a leak, not a teardown at an unknown moment). */
void crail_free(crail_conn *conn);

/* ---- both ---- */
uint32_t crail_mr_lkey(crail_mr *mr);
uint32_t crail_mr_rkey(crail_mr *mr);
uint64_t crail_mr_addr(crail_mr *mr);
void crail_deregister(crail_mr *mr);
const char *crail_status_str(int status);
/* 1 if librdmacm sees at least one RDMA device. */
int crail_devices(void);
