package io.crailpy.client;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The connections to datanodes, one per {@code host:port}, shared by every thread and file of a
 * {@link Crailpy}: a connection is pipelined, so one is enough (docs/protocol.md 1). A broken
 * connection is replaced by the next transfer that needs it.
 */
final class Datanodes implements AutoCloseable {
    private final int connectTimeoutMs;
    private final long ioTimeoutMs;
    private final ConcurrentHashMap<String, Connection> byAddress = new ConcurrentHashMap<>();
    private volatile boolean closed;

    Datanodes(int connectTimeoutMs, long ioTimeoutMs) {
        this.connectTimeoutMs = connectTimeoutMs;
        this.ioTimeoutMs = ioTimeoutMs;
    }

    /**
     * The connection for the block at {@code location}; {@code what} names the block in errors.
     * A dead datanode means the block is lost; one without TCP cannot be reached by this client.
     */
    Connection connection(Location location, String what) throws IOException {
        DatanodeInfo d = location.datanode();
        String name = "datanode " + Integer.toUnsignedString(d.id()) + " (" + d.address() + ")";
        if (!d.alive()) {
            throw new BlockLostException(what + " lived on " + name + ", which is dead; the data is lost");
        }
        if (!d.offersTcp()) {
            throw new CrailpyException(Status.INVALID, what + " is on " + name + ", which serves its blocks "
                    + "over NVMe/TCP only; this Java client speaks TCP only: keep the data in the dram class");
        }
        if (closed) {
            throw new UnreachableException("this crailpy client is closed", null);
        }
        try {
            return byAddress.compute(d.address(), (address, c) -> {
                if (c != null && !c.isBroken()) {
                    return c;
                }
                try {
                    return new Connection(d.host(), d.port(), name, connectTimeoutMs, ioTimeoutMs);
                } catch (CrailpyException e) {
                    throw new UncheckedIOException(e);
                }
            });
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
    }

    @Override
    public void close() {
        closed = true;
        byAddress.values().forEach(Connection::close);
        byAddress.clear();
    }
}
