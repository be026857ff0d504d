package io.crailpy.client;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Writes a new file sequentially (docs/protocol.md 8.3); nothing is visible until {@link #close}
 * commits it, and {@link #abort} drops it. One thread writes; transfers finish on others.
 *
 * <p>Bytes are gathered into pieces of up to {@link #PIECE} bytes that never cross a block
 * boundary; each full piece goes out as one WRITE while the caller goes on, with at most
 * {@link #INFLIGHT} pieces in flight across datanodes. The first piece may grow to a whole
 * block. {@link #flush} sends nothing: a piece goes out when it is full or at close, so the
 * last piece is known to end the file and a file that ends within its first block takes a
 * chunk of its size, not a block (a whole block cut down at commit leaves fragments of which
 * no whole block can be made while the file lives). Blocks are allocated as the Python client
 * does: for a piece past the file's blocks, ALLOC_BLOCKS for it and, ahead of need, as many as
 * the file has (up to {@link #ALLOC_AHEAD}); for the last piece, the whole blocks up to it and a
 * {@code tail} chunk. A WRITE refused as {@code STALE} is sent again after GET_BLOCKS with the
 * write token, as long as the fresh location is not the one refused (then it is a
 * {@link BlockLostException}). After any failed transfer
 * the file can only be aborted: writes and close report the failure, and close aborts.
 */
public final class FileWriter extends OutputStream {
    static final int PIECE = 1 << 20;
    static final int INFLIGHT = 8;
    static final int ALLOC_AHEAD = 8;

    private final Crailpy store;
    private final String path;
    private final NodeInfo created;
    private final long token;
    private final int blockSize;
    private final int pieceSize;
    private final List<Location> blocks = new ArrayList<>(); // guarded by itself
    private final Semaphore inflight = new Semaphore(INFLIGHT);
    private final ArrayDeque<byte[]> spare = new ArrayDeque<>(); // guarded by itself
    private final AtomicReference<IOException> failure = new AtomicReference<>();
    private byte[] buf;
    private int filled;
    private long sent; // file position of buf[0]
    private NodeInfo committed;
    private boolean done;

    FileWriter(Crailpy store, String path, Namenode.Created created) throws CrailpyException {
        this.store = store;
        this.path = path;
        this.created = created.info();
        this.token = created.token();
        this.blockSize = created.info().blockSize();
        this.pieceSize = Math.min(blockSize, PIECE);
        blocks.addAll(Location.of(created.datanodes(), created.blocks()));
    }

    public String path() {
        return path;
    }

    /** Bytes written so far (sent or buffered). */
    public long position() {
        return sent + filled;
    }

    /** The committed file's info, once {@link #close} succeeded; null before. */
    public NodeInfo committed() {
        return committed;
    }

    @Override
    public void write(int b) throws IOException {
        write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
        Objects.checkFromIndexSize(off, len, b.length);
        check();
        while (len > 0) {
            if (buf == null) {
                buf = takeBuffer();
            }
            int most = sent == 0 ? blockSize : pieceSize;
            int room = (int) Math.min(most - filled, blockSize - (sent + filled) % blockSize);
            int n = Math.min(room, len);
            if (filled + n > buf.length) { // the first piece, past PIECE
                buf = Arrays.copyOf(buf, Math.min(most, Math.max(2 * buf.length, filled + n)));
            }
            System.arraycopy(b, off, buf, filled, n);
            filled += n;
            off += n;
            len -= n;
            if (n == room) {
                sendPiece(false);
            }
        }
    }

    /** Sends the last piece, waits for every WRITE's OK, and commits; on any failure, aborts. */
    @Override
    public void close() throws IOException {
        if (done) {
            return;
        }
        try {
            check();
            if (filled > 0) {
                sendPiece(true);
            }
            drain();
            check();
            committed = store.namenode().commit(created.id(), token, sent);
            done = true;
        } catch (IOException | RuntimeException e) {
            try {
                abort();
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /** Gives the file up: ABORT frees its blocks and it never becomes visible. */
    public void abort() throws IOException {
        if (done) {
            return;
        }
        done = true;
        drain();
        store.namenode().abort(created.id(), token);
    }

    private void check() throws IOException {
        if (done) {
            throw new IOException(path + ": writer is closed");
        }
        IOException failed = failure.get();
        if (failed != null) {
            throw failed;
        }
    }

    /** Waits until no WRITE is in flight (the I/O timeout bounds it). */
    private void drain() {
        inflight.acquireUninterruptibly(INFLIGHT);
        inflight.release(INFLIGHT);
    }

    private byte[] takeBuffer() {
        synchronized (spare) {
            byte[] b = spare.poll();
            return b != null ? b : new byte[pieceSize];
        }
    }

    /** Sends the buffered piece at {@link #sent}; {@code last}: it ends the file. */
    private void sendPiece(boolean last) throws IOException {
        long index = sent / blockSize;
        int offset = (int) (sent % blockSize);
        while (blockCount() <= index) { // the namenode may give fewer blocks than asked
            allocate(last);
        }
        try {
            inflight.acquire();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            InterruptedIOException out = new InterruptedIOException(path + ": interrupted while writing");
            failure.compareAndSet(null, out);
            throw out;
        }
        byte[] data = buf;
        ByteBuffer piece = ByteBuffer.wrap(data, 0, filled);
        buf = null;
        sent += filled;
        filled = 0;
        transfer(index, offset, piece, null, 0).whenComplete((v, e) -> {
            if (e != null) {
                Throwable cause = Connection.unwrap(e);
                failure.compareAndSet(null, cause instanceof IOException ? (IOException) cause : new IOException(cause));
            }
            synchronized (spare) {
                spare.push(data);
            }
            inflight.release();
        });
    }

    private int blockCount() {
        synchronized (blocks) {
            return blocks.size();
        }
    }

    private void allocate(boolean last) throws IOException {
        int have = blockCount();
        Namenode.Blocks reply;
        if (last) { // the file ends with this piece: whole blocks up to its block, then a chunk
            long end = sent + filled;
            long whole = end / blockSize;
            long tail = end % blockSize;
            long count = Math.min(whole - have, Namenode.MAX_PER_REPLY);
            if (count < whole - have) {
                tail = 0; // more than one reply's worth: the tail comes with a later one
            }
            reply = store.namenode().allocBlocks(created.id(), token, (int) count, tail);
        } else {
            long want = Math.max(Math.min(ALLOC_AHEAD, have), sent / blockSize + 1 - have);
            reply = store.namenode().allocBlocks(created.id(), token, (int) Math.min(want, Namenode.MAX_PER_REPLY), 0);
        }
        List<Location> fresh = Location.of(reply.datanodes(), reply.blocks());
        synchronized (blocks) {
            blocks.addAll(fresh);
        }
    }

    /** Writes one piece; {@code refused} and {@code tries} as in FileReader.readPiece. */
    private CompletableFuture<Void> transfer(long index, int offset, ByteBuffer piece, Block refused, int tries) {
        CompletableFuture<Void> write;
        Location l;
        synchronized (blocks) {
            l = blocks.get((int) index);
        }
        try {
            FileReader.lostIfRefusedAgain(l.block(), refused, what(index));
            write = store.datanodes().connection(l, what(index))
                    .write(l.block().datanode(), l.block().offset() + offset, l.block().key(), piece);
        } catch (IOException e) {
            write = CompletableFuture.failedFuture(e);
        }
        return write.exceptionallyComposeAsync(e -> {
            Throwable cause = Connection.unwrap(e);
            if (!FileReader.isStale(cause)) {
                return CompletableFuture.failedFuture(cause);
            }
            if (tries + 1 >= FileReader.MAX_TRIES) {
                return CompletableFuture.failedFuture(new BlockLostException(what(index) + " was refused "
                        + FileReader.MAX_TRIES + " times: " + cause.getMessage()));
            }
            return refresh(index).thenComposeAsync(v -> transfer(index, offset, piece, l.block(), tries + 1),
                    store.executor());
        }, store.executor());
    }

    /** GET_BLOCKS with the write token: the current keys of blocks {@code index} on. */
    private CompletableFuture<Void> refresh(long index) {
        int count = (int) Math.min(blockCount() - index, FileReader.LOOKUP_BLOCKS);
        return store.namenode().getBlocksAsync(created.id(), index, count, token).thenAccept(reply -> {
            List<Location> fresh;
            try {
                fresh = Location.of(reply.datanodes(), reply.blocks());
            } catch (CrailpyException e) {
                throw new CompletionException(e);
            }
            synchronized (blocks) {
                for (int i = 0; i < fresh.size(); i++) {
                    blocks.set((int) (reply.first() + i), fresh.get(i));
                }
            }
        });
    }

    private String what(long index) {
        return path + ": block " + index;
    }
}
