package io.crailpy.client;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Positional reads of one committed file (docs/protocol.md 8.4), safe for many threads at once.
 *
 * <p>A range is split at block boundaries and its pieces are in flight together (up to
 * {@link #INFLIGHT}), each received straight into the caller's buffer. Block locations come
 * from the LOOKUP that opened the file and then from GET_BLOCKS, {@link #LOOKUP_BLOCKS} at a
 * time. A piece refused as {@code STALE} (its key region's key changed) is read again with a
 * fresh location; the same location refused again, a dead datanode, a short read, or a block
 * the namenode no longer lists is a {@link BlockLostException}. A deleted file fails with the
 * namenode's {@code NOT_FOUND}, never with another file's bytes.
 */
public final class FileReader implements AutoCloseable {
    /** Block locations asked for at a time, as the Python client. */
    static final int LOOKUP_BLOCKS = 64;
    /** Attempts of one transfer refused as STALE, as the Python client's MAX_TRIES. */
    static final int MAX_TRIES = 16;
    /** Pieces of one read in flight at once, as the Python client. */
    static final int INFLIGHT = 16;

    private final Crailpy store;
    private final String path;
    private final NodeInfo info;
    private final int blockSize;
    private final ConcurrentHashMap<Long, Location> locations = new ConcurrentHashMap<>();
    /** The file's bytes, if the namenode holds them (a small file PUT whole); else null. */
    private final byte[] inline;
    private volatile boolean closed;

    FileReader(Crailpy store, String path, Namenode.Located located) throws CrailpyException {
        this.store = store;
        this.path = path;
        this.info = located.info();
        this.blockSize = info.blockSize();
        this.inline = located.heldInline() ? located.data() : null;
        remember(0, Location.of(located.datanodes(), located.blocks()));
    }

    public long size() {
        return info.size();
    }

    public NodeInfo info() {
        return info;
    }

    public String path() {
        return path;
    }

    /** Fills {@code dst[off .. off+len)} with the file's bytes from {@code position}. */
    public void readFully(long position, byte[] dst, int off, int len) throws IOException {
        Objects.checkFromIndexSize(off, len, dst.length);
        Connection.await(read(position, ByteBuffer.wrap(dst, off, len)));
    }

    /**
     * Fills {@code dst}'s remaining bytes with the file's bytes from {@code position}, from
     * {@code dst.position()} on; the buffer's position and limit are left as they are.
     */
    public void readFully(long position, ByteBuffer dst) throws IOException {
        Connection.await(read(position, dst));
    }

    /**
     * {@link #readFully(long, byte[], int, int)} without waiting. The buffer is not touched after
     * the future completes, also when it fails. Dependent actions run on the client's own
     * threads, never on a connection's reader, so they may block.
     */
    public CompletableFuture<Void> readAsync(long position, byte[] dst, int off, int len) {
        Objects.checkFromIndexSize(off, len, dst.length);
        return readAsync(position, ByteBuffer.wrap(dst, off, len));
    }

    /** {@link #readFully(long, ByteBuffer)} without waiting, as {@link #readAsync(long, byte[], int, int)}. */
    public CompletableFuture<Void> readAsync(long position, ByteBuffer dst) {
        return read(position, dst).whenCompleteAsync((v, e) -> { }, store.executor());
    }

    /** Later reads fail; reads in flight finish. The reader holds no connection of its own. */
    @Override
    public void close() {
        closed = true;
    }

    private CompletableFuture<Void> read(long position, ByteBuffer dst) {
        if (dst.isReadOnly()) {
            throw new IllegalArgumentException("the destination buffer is read-only");
        }
        ByteBuffer whole = dst.slice();
        int len = whole.remaining();
        if (closed) {
            return CompletableFuture.failedFuture(new CrailpyException(Status.INVALID, path + ": reader is closed"));
        }
        if (position < 0 || position > info.size() - len) {
            return CompletableFuture.failedFuture(new CrailpyException(Status.OUT_OF_RANGE, path + ": cannot read "
                    + len + " bytes at " + position + " of a file of " + info.size()));
        }
        if (len == 0) {
            return CompletableFuture.completedFuture(null);
        }
        if (inline != null) {
            whole.put(inline, (int) position, len);
            return CompletableFuture.completedFuture(null);
        }
        long first = position / blockSize;
        int pieces = (int) ((position + len - 1) / blockSize - first + 1);
        return Window.run(pieces, INFLIGHT, k -> {
            long index = first + k;
            long start = Math.max(position, index * blockSize);
            long end = Math.min(position + len, (index + 1) * blockSize);
            ByteBuffer piece = whole.duplicate().position((int) (start - position)).limit((int) (end - position))
                    .slice();
            return readPiece(index, (int) (start - index * blockSize), piece, null, 0);
        }, store.executor());
    }

    /**
     * Reads one piece; {@code refused}: the block location last refused as STALE (null at first).
     * The piece is tried again while each fresh location differs from the refused one: the
     * block lives on under a new key (its region's key changed again meanwhile, as under many
     * frees). The same location refused twice, or {@link #MAX_TRIES} refusals, mean it is lost.
     */
    private CompletableFuture<Void> readPiece(long index, int offset, ByteBuffer piece, Block refused, int tries) {
        CompletableFuture<Location> where = location(index);
        CompletableFuture<Void> read = where.isDone()
                ? where.thenCompose(l -> transfer(l, index, offset, piece, refused))
                : where.thenComposeAsync(l -> transfer(l, index, offset, piece, refused), store.executor());
        return read.exceptionallyComposeAsync(e -> {
            Throwable cause = Connection.unwrap(e);
            if (!isStale(cause)) {
                return CompletableFuture.failedFuture(cause);
            }
            if (tries + 1 >= MAX_TRIES) {
                return CompletableFuture.failedFuture(new BlockLostException(what(index) + " was refused "
                        + MAX_TRIES + " times: " + cause.getMessage()));
            }
            Location stale = where.join();
            locations.remove(index, stale);
            return readPiece(index, offset, piece, stale.block(), tries + 1);
        }, store.executor());
    }

    private CompletableFuture<Void> transfer(Location l, long index, int offset, ByteBuffer piece, Block refused) {
        int length = piece.remaining();
        try {
            lostIfRefusedAgain(l.block(), refused, what(index));
            Connection c = store.datanodes().connection(l, what(index));
            return c.read(l.block().datanode(), l.block().offset() + offset, l.block().key(), piece)
                    .thenApply(received -> {
                        if (received != length) {
                            throw new CompletionException(new BlockLostException(what(index) + ": a datanode returned "
                                    + received + " bytes for " + length));
                        }
                        return null;
                    });
        } catch (IOException e) {
            return CompletableFuture.failedFuture(e);
        }
    }

    private CompletableFuture<Location> location(long index) {
        Location known = locations.get(index);
        if (known != null) {
            return CompletableFuture.completedFuture(known);
        }
        return store.namenode().getBlocksAsync(info.id(), index, LOOKUP_BLOCKS, 0).thenApply(reply -> {
            try {
                remember(reply.first(), Location.of(reply.datanodes(), reply.blocks()));
            } catch (CrailpyException e) {
                throw new CompletionException(e);
            }
            Location found = locations.get(index);
            if (found == null) {
                throw new CompletionException(new BlockLostException(what(index) + " is not known to the namenode"));
            }
            return found;
        });
    }

    private void remember(long first, List<Location> fresh) {
        for (int i = 0; i < fresh.size(); i++) {
            locations.put(first + i, fresh.get(i));
        }
    }

    private String what(long index) {
        return path + ": block " + index;
    }

    /** A fresh location that is the one just refused as STALE: the block is gone (8.4, 8.8). */
    static void lostIfRefusedAgain(Block fresh, Block refused, String what) throws BlockLostException {
        if (fresh.equals(refused)) {
            throw new BlockLostException(what + " was refused as STALE, and the namenode still gives the same "
                    + "location: the datanode restarted or the block is lost");
        }
    }

    static boolean isStale(Throwable t) {
        return t instanceof CrailpyException && ((CrailpyException) t).status() == Status.STALE;
    }
}
