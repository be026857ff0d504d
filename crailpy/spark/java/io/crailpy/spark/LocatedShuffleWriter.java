package io.crailpy.spark;

import org.apache.spark.scheduler.MapStatus;
import org.apache.spark.shuffle.ShuffleWriter;
import org.apache.spark.storage.BlockManagerId;
import scala.Option;
import scala.Product2;
import scala.collection.Iterator;

/**
 * Spark's writer, with the map output's location made the map task's own instead of its
 * executor's. A map output then outlives its executor, and a reduce task that finds it gone
 * reports a fetch failure naming that one output: Spark re-runs that map task, not every
 * map task that happened to run on the same executor (or, with one shared location, all).
 */
final class LocatedShuffleWriter<K, V> extends ShuffleWriter<K, V> {
    /** Executor id prefix of map output locations; no real executor has it. */
    static final String EXECUTOR_PREFIX = "crailpy-map-";

    private final ShuffleWriter<K, V> writer;
    private final long mapTaskId;

    LocatedShuffleWriter(ShuffleWriter<K, V> writer, long mapTaskId) {
        this.writer = writer;
        this.mapTaskId = mapTaskId;
    }

    static BlockManagerId location(long mapTaskId) {
        return BlockManagerId.apply(EXECUTOR_PREFIX + mapTaskId, "crailpy", 1, Option.empty());
    }

    @Override
    public void write(Iterator<Product2<K, V>> records) throws java.io.IOException {
        writer.write(records);
    }

    @Override
    public Option<MapStatus> stop(boolean success) {
        Option<MapStatus> status = writer.stop(success);
        if (status.isDefined()) {
            status.get().updateLocation(location(mapTaskId));
        }
        return status;
    }

    @Override
    public long[] getPartitionLengths() {
        return writer.getPartitionLengths();
    }
}
