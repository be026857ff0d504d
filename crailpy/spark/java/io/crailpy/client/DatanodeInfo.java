package io.crailpy.client;

/**
 * A datanode as LOOKUP, GET_BLOCKS and STATFS report it (docs/protocol.md 4), with its
 * {@code RdmaRegion} and {@code NvmfTarget} flattened in. This client moves bytes over TCP
 * only, so it needs {@code host}, {@code port}, {@code alive} and the {@code TCP} bit.
 */
public record DatanodeInfo(int id, int storageClass, int locationClass, int transports, boolean alive,
                           int port, int rdmaPort, long rdmaAddress, int nvmfPort, String nvmfNqn,
                           String host) {
    public static final int TCP = 1;
    public static final int RDMA = 2;
    public static final int NVMF = 4;

    public boolean offersTcp() {
        return (transports & TCP) != 0;
    }

    /** {@code host:port} of its crailpy frames, with IPv6 hosts in brackets. */
    public String address() {
        return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
    }
}
