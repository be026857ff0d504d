package io.crailpy.spark;

import org.apache.spark.SparkConf;
import org.apache.spark.TaskContext;
import org.apache.spark.shuffle.BaseShuffleHandle;
import org.apache.spark.shuffle.ShuffleHandle;
import org.apache.spark.shuffle.ShuffleReadMetricsReporter;
import org.apache.spark.shuffle.ShuffleReader;
import org.apache.spark.shuffle.ShuffleWriteMetricsReporter;
import org.apache.spark.shuffle.ShuffleWriter;
import org.apache.spark.shuffle.sort.SortShuffleManager;

/**
 * Spark's sort shuffle with crailpy underneath ({@code spark.shuffle.manager}). Spark's own
 * writers sort and serialize, and hand their bytes to CrailpyShuffleDataIO; each map output's
 * location is made its own (LocatedShuffleWriter); reduce tasks read straight from crailpy
 * (CrailpyShuffleReader) instead of asking executors, which may be gone.
 */
public final class CrailpyShuffleManager extends SortShuffleManager {
    private final ShuffleConf conf;

    public CrailpyShuffleManager(SparkConf sparkConf, boolean isDriver) {
        super(sparkConf);
        this.conf = new ShuffleConf(sparkConf);
    }

    @Override
    public <K, V> ShuffleWriter<K, V> getWriter(ShuffleHandle handle, long mapId, TaskContext context,
                                                ShuffleWriteMetricsReporter metrics) {
        return new LocatedShuffleWriter<>(super.getWriter(handle, mapId, context, metrics), mapId);
    }

    @Override
    public <K, C> ShuffleReader<K, C> getReader(ShuffleHandle handle, int startMapIndex, int endMapIndex,
                                                int startPartition, int endPartition,
                                                TaskContext context, ShuffleReadMetricsReporter metrics) {
        return new CrailpyShuffleReader<>(conf, (BaseShuffleHandle<K, ?, C>) handle, startMapIndex,
            endMapIndex, startPartition, endPartition, context, metrics);
    }

    @Override
    public void stop() {
        super.stop();
        Clients.closeAll();
    }
}
