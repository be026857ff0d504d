package io.crailpy.client;

import java.io.BufferedInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;

/**
 * One TCP connection to a namenode or datanode, shared by any number of threads, with many
 * requests in flight (docs/protocol.md 1, 6.4).
 *
 * <p>Senders take a lock only to write their frame. A dedicated reader thread reads every
 * response, matches it to its request by id and completes the request's future; it never stops
 * reading while requests are in flight, so a server blocked sending READ data cannot deadlock
 * with a client blocked sending a WRITE. READ data goes straight into the caller's buffer.
 *
 * <p>When the connection breaks (EOF, a malformed frame, a send failure, {@link #close}, or no
 * byte received for the I/O timeout while requests wait), every request in flight fails. Only
 * the reader thread fails them, after it has stopped writing into any buffer, so a failed
 * future never sees its buffer written later. A plain {@link Socket} (not a SocketChannel) is
 * used because its I/O is not interruptible: an interrupted caller (a cancelled Spark task) must
 * not close a connection that other threads share.
 */
final class Connection implements AutoCloseable {
    /** Decodes a successful response body; runs on the reader thread, a failure breaks the connection. */
    interface Parser<T> {
        T parse(Wire.Decoder body) throws CrailpyException;
    }

    private static final int READ_BUFFER = 64 << 10;
    private static final int SEND_CHUNK = 256 << 10; // progress is noted after each, for the timeout
    private static final ScheduledExecutorService WATCHDOG = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "crailpy-watchdog");
        t.setDaemon(true);
        return t;
    });

    private static final class Pending<T> {
        final int opcode;
        final Parser<T> parser; // null for a READ
        final ByteBuffer into; // a READ's destination
        final CompletableFuture<T> future = new CompletableFuture<>();

        Pending(int opcode, Parser<T> parser, ByteBuffer into) {
            this.opcode = opcode;
            this.parser = parser;
            this.into = into;
        }
    }

    private final String peer;
    private final long ioTimeoutNanos;
    private final Socket socket;
    private final InputStream in;
    private final OutputStream out;
    private final ReentrantLock sendLock = new ReentrantLock();
    private final AtomicLong ids = new AtomicLong();
    private final ConcurrentHashMap<Long, Pending<?>> pending = new ConcurrentHashMap<>();
    private final ScheduledFuture<?> watch;
    private volatile CrailpyException broken;
    private volatile long lastProgress = System.nanoTime();

    /** Connects to {@code host:port}; {@code peer} names the server in messages ("datanode 3"). */
    Connection(String host, int port, String peer, int connectTimeoutMs, long ioTimeoutMs)
            throws CrailpyException {
        this.peer = peer + " at " + host + ":" + port;
        this.ioTimeoutNanos = TimeUnit.MILLISECONDS.toNanos(ioTimeoutMs);
        Socket s = new Socket();
        try {
            s.setTcpNoDelay(true);
            s.connect(new InetSocketAddress(host, port), connectTimeoutMs);
            in = new BufferedInputStream(s.getInputStream(), READ_BUFFER);
            out = s.getOutputStream();
        } catch (IOException e) {
            try {
                s.close();
            } catch (IOException ignored) {
                // the connect failure is the news
            }
            throw new UnreachableException("cannot reach " + this.peer + ": " + e.getMessage(), e);
        }
        socket = s;
        Thread reader = new Thread(this::receive, "crailpy-reader " + this.peer);
        reader.setDaemon(true);
        reader.start();
        long period = Math.max(ioTimeoutMs / 4, 50);
        watch = WATCHDOG.scheduleAtFixedRate(this::checkTimeout, period, period, TimeUnit.MILLISECONDS);
    }

    /** A request whose body is {@code body}; its successful response is decoded by {@code parser}. */
    <T> CompletableFuture<T> call(int opcode, Wire.Encoder body, Parser<T> parser) {
        return submit(opcode, body, null, new Pending<>(opcode, parser, null));
    }

    /** WRITE of {@code data}'s remaining bytes at {@code offset} of the datanode's region. */
    CompletableFuture<Void> write(int datanode, long offset, int key, ByteBuffer data) {
        Wire.Encoder body = new Wire.Encoder().u32(datanode).u64(offset).u32(key);
        return submit(Op.WRITE, body, data, new Pending<Void>(Op.WRITE, d -> null, null));
    }

    /**
     * READ of {@code into.remaining()} bytes at {@code offset}, received into {@code into} from its
     * position (its position and limit are left alone); the future gives the bytes received,
     * which a datanode may make fewer than asked.
     */
    CompletableFuture<Integer> read(int datanode, long offset, int key, ByteBuffer into) {
        Wire.Encoder body = new Wire.Encoder().u32(datanode).u32(into.remaining()).u64(offset).u32(key);
        return submit(Op.READ, body, null, new Pending<Integer>(Op.READ, null, into));
    }

    boolean isBroken() {
        return broken != null;
    }

    /** Fails every request in flight and closes the socket. */
    @Override
    public void close() {
        breakWith(new UnreachableException("connection to " + peer + " closed", null));
    }

    private <T> CompletableFuture<T> submit(int opcode, Wire.Encoder body, ByteBuffer data, Pending<T> p) {
        CrailpyException why = broken;
        if (why != null) {
            return CompletableFuture.failedFuture(why);
        }
        long id = ids.incrementAndGet();
        if (pending.isEmpty()) {
            lastProgress = System.nanoTime(); // the timeout counts from the first request of a busy spell
        }
        pending.put(id, p);
        if (broken != null && pending.remove(id) != null) {
            // The reader had already failed everything in flight; it will not see this one.
            p.future.completeExceptionally(broken);
            return p.future;
        }
        int dataLength = data == null ? 0 : data.remaining();
        byte[] frame = body.array();
        Frame.writeRequestHeader(frame, opcode, id, body.size() - Frame.HEADER_SIZE + dataLength);
        sendLock.lock();
        try {
            out.write(frame, 0, body.size());
            if (data != null) {
                send(data);
            }
        } catch (IOException e) {
            // The reader thread, woken by the close, fails this request with the others.
            breakWith(new UnreachableException("lost the connection to " + peer + ": " + e.getMessage(), e));
        } finally {
            sendLock.unlock();
        }
        return p.future;
    }

    private void send(ByteBuffer data) throws IOException {
        ByteBuffer src = data.duplicate();
        byte[] scratch = src.hasArray() ? null : new byte[Math.min(src.remaining(), SEND_CHUNK)];
        while (src.hasRemaining()) {
            int n = Math.min(src.remaining(), SEND_CHUNK);
            if (scratch == null) {
                out.write(src.array(), src.arrayOffset() + src.position(), n);
                src.position(src.position() + n);
            } else {
                src.get(scratch, 0, n);
                out.write(scratch, 0, n);
            }
            lastProgress = System.nanoTime();
        }
    }

    private void breakWith(CrailpyException why) {
        synchronized (this) {
            if (broken != null) {
                return;
            }
            broken = why;
        }
        watch.cancel(false);
        try {
            socket.close(); // wakes the reader thread, which fails what is in flight
        } catch (IOException ignored) {
            // closing is all that was wanted
        }
    }

    private void checkTimeout() {
        if (!pending.isEmpty() && System.nanoTime() - lastProgress > ioTimeoutNanos) {
            breakWith(new UnreachableException(peer + " did not answer within "
                    + TimeUnit.NANOSECONDS.toMillis(ioTimeoutNanos) + " ms", null));
        }
    }

    /** The reader thread: one response after another until the connection breaks. */
    private void receive() {
        byte[] head = new byte[Frame.HEADER_SIZE];
        Pending<?> current = null;
        try {
            while (true) {
                fill(head, 0, head.length);
                Frame.Header h = Frame.readHeader(head);
                current = pending.remove(h.requestId());
                if (current == null || !h.isResponse() || h.opcode() != current.opcode) {
                    throw new CrailpyException(Status.PROTOCOL, peer + " sent a frame that answers no request"
                            + " of ours (id " + Long.toUnsignedString(h.requestId()) + ", opcode " + h.opcode() + ")");
                }
                if (h.status() != 0) {
                    Wire.Decoder d = body(h.length(), "Error");
                    String message = d.str();
                    d.end();
                    current.future.completeExceptionally(CrailpyException.fromReply(h.status(), message));
                } else if (current.into != null) {
                    receiveData(h.length(), current);
                } else {
                    complete(current, body(h.length(), "reply to opcode " + h.opcode()));
                }
                current = null;
            }
        } catch (Throwable t) {
            CrailpyException why = t instanceof CrailpyException ? (CrailpyException) t
                    : new UnreachableException("lost the connection to " + peer + ": " + t, t);
            breakWith(why);
            if (current != null) {
                current.future.completeExceptionally(broken);
            }
            for (Long id : pending.keySet()) {
                Pending<?> p = pending.remove(id);
                if (p != null) {
                    p.future.completeExceptionally(broken);
                }
            }
        }
    }

    @SuppressWarnings("unchecked")
    private void receiveData(int length, Pending<?> p) throws IOException {
        ByteBuffer into = p.into;
        if (length > into.remaining() || length > Frame.MAX_DATA) {
            throw new CrailpyException(Status.PROTOCOL, peer + " sent " + length + " bytes for a READ of "
                    + into.remaining());
        }
        if (into.hasArray()) {
            fill(into.array(), into.arrayOffset() + into.position(), length);
        } else {
            ByteBuffer dst = into.duplicate();
            byte[] scratch = new byte[Math.min(length, READ_BUFFER)];
            for (int done = 0; done < length; ) {
                int n = Math.min(length - done, scratch.length);
                fill(scratch, 0, n);
                dst.put(scratch, 0, n);
                done += n;
            }
        }
        ((Pending<Integer>) p).future.complete(length);
    }

    private static <T> void complete(Pending<T> p, Wire.Decoder body) throws CrailpyException {
        T value = p.parser.parse(body);
        body.end();
        p.future.complete(value);
    }

    private Wire.Decoder body(int length, String what) throws IOException {
        if (length > Frame.MAX_BODY) {
            throw new CrailpyException(Status.PROTOCOL, what + " body of " + length + " bytes is over the limit");
        }
        byte[] raw = new byte[length];
        fill(raw, 0, length);
        return new Wire.Decoder(raw, 0, length, what);
    }

    private void fill(byte[] dst, int off, int len) throws IOException {
        while (len > 0) {
            int n = in.read(dst, off, len);
            if (n < 0) {
                throw new EOFException(peer + " closed the connection");
            }
            lastProgress = System.nanoTime();
            off += n;
            len -= n;
        }
    }

    /**
     * The result of {@code future}, waiting until it has settled even if interrupted (a transfer
     * must not land in a buffer after its caller moved on; the I/O timeout bounds the wait),
     * then reporting the interrupt. Failures come out as the IOException that caused them.
     */
    static <T> T await(CompletableFuture<T> future) throws IOException {
        boolean interrupted = false;
        try {
            while (true) {
                try {
                    T value = future.get();
                    if (interrupted) {
                        throw new InterruptedIOException("interrupted while waiting for crailpy");
                    }
                    return value;
                } catch (InterruptedException e) {
                    interrupted = true;
                } catch (ExecutionException | CancellationException e) {
                    if (interrupted) {
                        InterruptedIOException out = new InterruptedIOException("interrupted while waiting for crailpy");
                        out.initCause(e.getCause());
                        throw out;
                    }
                    throw rethrow(e);
                }
            }
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** What a failed future failed with, out of the wrappers the futures put around it. */
    static Throwable unwrap(Throwable t) {
        Throwable cause = t;
        while ((cause instanceof ExecutionException || cause instanceof CompletionException)
                && cause.getCause() != null) {
            cause = cause.getCause();
        }
        return cause;
    }

    /** The IOException behind a failed future's exception (unchecked ones are thrown as they are). */
    static IOException rethrow(Throwable t) {
        Throwable cause = unwrap(t);
        if (cause instanceof IOException) {
            return (IOException) cause;
        }
        if (cause instanceof RuntimeException) {
            throw (RuntimeException) cause;
        }
        if (cause instanceof Error) {
            throw (Error) cause;
        }
        return new IOException(cause);
    }
}
