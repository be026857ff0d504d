package io.crailpy.client;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * Typed namenode calls (docs/protocol.md 5.2 to 5.14) over one shared, pipelined connection.
 *
 * <p>Safe for many threads. A broken connection is replaced on the next call; files opened for
 * writing on the old one are gone with it (the namenode aborts them), so their writers then
 * fail with {@code NOT_FOUND}, as the protocol says.
 */
public final class Namenode implements AutoCloseable {
    /** CREATE flags (5.3). */
    public static final int OVERWRITE = 1;
    public static final int PARENTS = 2;
    public static final int EXIST_OK = 4;
    public static final int EXACT = 8;
    /** Storage or location class: the parent's. */
    public static final int ANY_CLASS = -1;
    /** Most blocks or parts one reply carries (MAX_BLOCKS_PER_REPLY, MAX_PARTS_PER_REPLY). */
    public static final int MAX_PER_REPLY = 4096;
    /** Most entries one LIST reply carries. */
    public static final int MAX_ENTRIES_PER_REPLY = 1000;

    public record Pong(int serverVersion, int role) {
    }

    /** CREATE/CREATE_PART reply: for a file, its write token and reserved blocks 0..n-1. */
    public record Created(NodeInfo info, long token, List<DatanodeInfo> datanodes, List<Block> blocks) {
    }

    /**
     * LOOKUP reply: a file's first blocks, or its bytes if the namenode holds them ({@code data},
     * as long as the file), a multifile's first parts.
     */
    public record Located(NodeInfo info, List<DatanodeInfo> datanodes, List<Block> blocks, List<Part> parts,
            byte[] data) {
        /** Whether {@code data} is the file: the namenode holds small files PUT whole. */
        public boolean heldInline() {
            return data.length == info.size() && blocks.isEmpty();
        }
    }

    /** GET_BLOCKS/ALLOC_BLOCKS reply: blocks {@code first}, {@code first + 1}, ... of the file. */
    public record Blocks(long first, List<DatanodeInfo> datanodes, List<Block> blocks) {
    }

    public record Listing(boolean more, List<Entry> entries) {
    }

    public record Parts(long first, List<Part> parts) {
    }

    public record ClassUsage(int storageClass, long capacity, long used, long freeing, String name) {
    }

    public record DatanodeUsage(DatanodeInfo info, long capacity, long used) {
    }

    /**
     * STATFS reply; {@code classes.get(i).storageClass() == i}; {@code inline*}: the namenode's
     * memory for the small files it holds.
     */
    public record FsUsage(int blockSize, List<ClassUsage> classes, List<DatanodeUsage> datanodes,
            long inlineCapacity, long inlineUsed) {
    }

    private final String host;
    private final int port;
    private final int connectTimeoutMs;
    private final long ioTimeoutMs;
    private Connection connection;
    private boolean closed;

    Namenode(String host, int port, int connectTimeoutMs, long ioTimeoutMs) throws CrailpyException {
        this.host = host;
        this.port = port;
        this.connectTimeoutMs = connectTimeoutMs;
        this.ioTimeoutMs = ioTimeoutMs;
        connection();
    }

    private synchronized Connection connection() throws CrailpyException {
        if (closed) {
            throw new UnreachableException("this crailpy client is closed", null);
        }
        if (connection == null || connection.isBroken()) {
            connection = new Connection(host, port, "namenode", connectTimeoutMs, ioTimeoutMs);
        }
        return connection;
    }

    private <T> CompletableFuture<T> send(int opcode, Wire.Encoder body, Connection.Parser<T> parser) {
        try {
            return connection().call(opcode, body, parser);
        } catch (CrailpyException e) {
            return CompletableFuture.failedFuture(e);
        }
    }

    private <T> T call(int opcode, Wire.Encoder body, Connection.Parser<T> parser) throws IOException {
        return Connection.await(send(opcode, body, parser));
    }

    public Pong ping() throws IOException {
        return call(Op.PING, new Wire.Encoder(), d -> new Pong(d.u8(), d.u8()));
    }

    /** CREATE: {@code type} a NodeInfo type, classes -1 for the parent's, {@code flags} as above. */
    public Created create(int type, int storageClass, int locationClass, int flags, long reserve, String path)
            throws IOException {
        Wire.Encoder body = new Wire.Encoder().u8(type).i8(storageClass).i8(locationClass).u8(flags)
                .u64(reserve).str(path);
        return call(Op.CREATE, body, Namenode::created);
    }

    /** CREATE_PART: a new part of the multifile at {@code path}, written like a file. */
    public Created createPart(int locationClass, int flags, long reserve, String path) throws IOException {
        Wire.Encoder body = new Wire.Encoder().i8(locationClass).u8(flags).u64(reserve).str(path);
        return call(Op.CREATE_PART, body, Namenode::created);
    }

    public Located lookup(String path, int maxBlocks) throws IOException {
        Wire.Encoder body = new Wire.Encoder().u32(maxBlocks).str(path);
        return call(Op.LOOKUP, body,
                d -> new Located(d.nodeInfo(), d.datanodeInfos(), d.blocks(), d.parts(), d.bytes()));
    }

    /** GET_BLOCKS; {@code token} 0 for a committed file, the write token for one being written. */
    public Blocks getBlocks(long node, long first, int count, long token) throws IOException {
        return Connection.await(getBlocksAsync(node, first, count, token));
    }

    public CompletableFuture<Blocks> getBlocksAsync(long node, long first, int count, long token) {
        Wire.Encoder body = new Wire.Encoder().u64(node).u64(first).u32(count).u64(token);
        return send(Op.GET_BLOCKS, body, Namenode::blocks);
    }

    /**
     * ALLOC_BLOCKS: {@code count} whole blocks, then a chunk for {@code tail} bytes if not 0.
     * Answered NO_SPACE while freed space is on its way back (docs/protocol.md 8.8: it returns
     * once its key region's key has changed, within about a heartbeat), it asks again every
     * 20 ms, up to the I/O timeout, as the Python client does.
     */
    public Blocks allocBlocks(long node, long token, int count, long tail) throws IOException {
        long until = System.nanoTime() + ioTimeoutMs * 1_000_000L;
        boolean lastTry = false;
        while (true) {
            try {
                Wire.Encoder body = new Wire.Encoder().u64(node).u64(token).u32(count).u64(tail);
                return call(Op.ALLOC_BLOCKS, body, Namenode::blocks);
            } catch (CrailpyException e) {
                if (e.status() != Status.NO_SPACE || lastTry || System.nanoTime() > until) {
                    throw e;
                }
                // Nothing freeing now: it may all have come back since the refusal, so one
                // more try, at once, and that one's answer stands.
                lastTry = statfs().classes().stream().allMatch(c -> c.freeing() == 0);
                if (lastTry) {
                    continue;
                }
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while waiting for freed space");
            }
        }
    }

    public NodeInfo commit(long node, long token, long size) throws IOException {
        Wire.Encoder body = new Wire.Encoder().u64(node).u64(token).u64(size);
        return call(Op.COMMIT, body, Wire.Decoder::nodeInfo);
    }

    public void abort(long node, long token) throws IOException {
        call(Op.ABORT, new Wire.Encoder().u64(node).u64(token), d -> null);
    }

    /** One page of LIST; page with {@code start += entries.size()} while {@code more}. */
    public Listing list(String path, int start, int maxEntries) throws IOException {
        Wire.Encoder body = new Wire.Encoder().u32(start).u32(maxEntries).str(path);
        return call(Op.LIST, body, d -> new Listing(d.u8() != 0, d.entries()));
    }

    public void delete(String path, boolean recursive) throws IOException {
        call(Op.DELETE, new Wire.Encoder().u8(recursive ? 1 : 0).str(path), d -> null);
    }

    public void rename(String src, String dst) throws IOException {
        call(Op.RENAME, new Wire.Encoder().str(src).str(dst), d -> null);
    }

    public Parts listParts(long node, long first, int count) throws IOException {
        Wire.Encoder body = new Wire.Encoder().u64(node).u64(first).u32(count);
        return call(Op.LIST_PARTS, body, d -> new Parts(d.u64(), d.parts()));
    }

    public FsUsage statfs() throws IOException {
        return call(Op.STATFS, new Wire.Encoder(), Namenode::fsUsage);
    }

    @Override
    public synchronized void close() {
        closed = true;
        if (connection != null) {
            connection.close();
        }
    }

    private static Created created(Wire.Decoder d) throws CrailpyException {
        return new Created(d.nodeInfo(), d.u64(), d.datanodeInfos(), d.blocks());
    }

    private static Blocks blocks(Wire.Decoder d) throws CrailpyException {
        return new Blocks(d.u64(), d.datanodeInfos(), d.blocks());
    }

    private static FsUsage fsUsage(Wire.Decoder d) throws CrailpyException {
        int blockSize = d.u32();
        int nc = d.count(Wire.CLASS_USAGE_MIN);
        List<ClassUsage> classes = new ArrayList<>(nc);
        for (int i = 0; i < nc; i++) {
            classes.add(new ClassUsage(d.u8(), d.u64(), d.u64(), d.u64(), d.str()));
        }
        int nd = d.count(Wire.DATANODE_USAGE_MIN);
        List<DatanodeUsage> datanodes = new ArrayList<>(nd);
        for (int i = 0; i < nd; i++) {
            datanodes.add(new DatanodeUsage(d.datanodeInfo(), d.u64(), d.u64()));
        }
        return new FsUsage(blockSize, classes, datanodes, d.u64(), d.u64());
    }
}
