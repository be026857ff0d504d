package io.crailpy.client;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A block together with the datanode that holds it: replies name each datanode once and
 * blocks refer to it by id, while a transfer needs both.
 */
record Location(DatanodeInfo datanode, Block block) {
    /** Each of {@code blocks} with its datanode from {@code datanodes} (one reply's lists). */
    static List<Location> of(List<DatanodeInfo> datanodes, List<Block> blocks) throws CrailpyException {
        Map<Integer, DatanodeInfo> byId = new HashMap<>();
        for (DatanodeInfo d : datanodes) {
            byId.put(d.id(), d);
        }
        List<Location> out = new ArrayList<>(blocks.size());
        for (Block b : blocks) {
            DatanodeInfo d = byId.get(b.datanode());
            if (d == null) {
                throw new CrailpyException(Status.PROTOCOL, "the namenode named datanode "
                        + Integer.toUnsignedString(b.datanode()) + " for a block but did not describe it");
            }
            out.add(new Location(d, b));
        }
        return out;
    }
}
