package io.crailpy.client;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.function.IntFunction;

/**
 * Runs transfers 0 .. n-1 with at most {@code limit} in flight, starting the next as one ends,
 * without blocking a thread. After a failure it starts no more and completes (with the first
 * failure) only once every started transfer has ended, so none lands in the caller's buffer
 * after the caller was told. Follow-ups run on {@code executor}, never on a connection's reader
 * thread, which must not block sending.
 */
final class Window {
    private final int n;
    private final int limit;
    private final IntFunction<CompletableFuture<?>> transfer;
    private final Executor executor;
    private final CompletableFuture<Void> done = new CompletableFuture<>();
    private int next;
    private int running;
    private boolean finished;
    private Throwable failure;

    private Window(int n, int limit, IntFunction<CompletableFuture<?>> transfer, Executor executor) {
        this.n = n;
        this.limit = limit;
        this.transfer = transfer;
        this.executor = executor;
    }

    static CompletableFuture<Void> run(int n, int limit, IntFunction<CompletableFuture<?>> transfer,
                                       Executor executor) {
        Window w = new Window(n, limit, transfer, executor);
        w.pump();
        return w.done;
    }

    private void pump() {
        while (true) {
            int i;
            Throwable outcome;
            synchronized (this) {
                if (failure == null && next < n && running < limit) {
                    i = next++;
                    running++;
                } else if (running == 0 && !finished) {
                    finished = true;
                    i = -1;
                } else {
                    return;
                }
                outcome = failure;
            }
            if (i < 0) {
                if (outcome != null) {
                    done.completeExceptionally(outcome);
                } else {
                    done.complete(null);
                }
                return;
            }
            CompletableFuture<?> f;
            try {
                f = transfer.apply(i);
            } catch (RuntimeException e) {
                f = CompletableFuture.failedFuture(e);
            }
            f.whenCompleteAsync((value, error) -> {
                synchronized (this) {
                    running--;
                    if (error != null && failure == null) {
                        failure = Connection.unwrap(error);
                    }
                }
                pump();
            }, executor);
        }
    }
}
