package io.crailpy.spark;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.Aggregator;
import org.apache.spark.InterruptibleIterator;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.SparkEnv;
import org.apache.spark.TaskContext;
import org.apache.spark.serializer.SerializerInstance;
import org.apache.spark.serializer.SerializerManager;
import org.apache.spark.shuffle.BaseShuffleHandle;
import org.apache.spark.shuffle.ShuffleReadMetricsReporter;
import org.apache.spark.shuffle.ShuffleReader;
import org.apache.spark.shuffle.checksum.RowBasedChecksum;
import org.apache.spark.storage.BlockId;
import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.storage.ShuffleBlockId;
import org.apache.spark.util.TaskCompletionListener;
import org.apache.spark.util.collection.ExternalSorter;
import scala.Option;
import scala.Product2;
import scala.Tuple2;
import scala.Tuple3;
import scala.collection.AbstractIterator;
import scala.collection.Iterator;

/**
 * A reduce task's reader: asks the map output tracker which map outputs hold its partitions,
 * fetches each one's range from crailpy (MapOutputFetcher: a few at once, bounded in bytes),
 * deserializes each partition's bytes as Spark's own reader would, then combines and sorts
 * as the dependency says.
 */
final class CrailpyShuffleReader<K, C> implements ShuffleReader<K, C> {
    private final ShuffleConf conf;
    private final BaseShuffleHandle<K, ?, C> handle;
    private final int startMapIndex;
    private final int endMapIndex;
    private final int startPartition;
    private final int endPartition;
    private final TaskContext context;
    private final ShuffleReadMetricsReporter metrics;

    CrailpyShuffleReader(ShuffleConf conf, BaseShuffleHandle<K, ?, C> handle, int startMapIndex,
                         int endMapIndex, int startPartition, int endPartition, TaskContext context,
                         ShuffleReadMetricsReporter metrics) {
        this.conf = conf;
        this.handle = handle;
        this.startMapIndex = startMapIndex;
        this.endMapIndex = endMapIndex;
        this.startPartition = startPartition;
        this.endPartition = endPartition;
        this.context = context;
        this.metrics = metrics;
    }

    @Override
    @SuppressWarnings({"unchecked", "rawtypes"})
    public Iterator<Product2<K, C>> read() {
        ShuffleDependency<K, ?, C> dep = handle.dependency();
        SparkEnv env = SparkEnv.get();
        MapOutputFetcher fetcher = new MapOutputFetcher(conf, env.conf().getAppId(), handle.shuffleId(),
            dep.partitioner().numPartitions(), wanted(env), metrics);
        context.addTaskCompletionListener((TaskCompletionListener) ctx -> {
            fetcher.close();
            ctx.taskMetrics().mergeShuffleReadMetrics();
        });
        Iterator records = new InterruptibleIterator(context,
            new Records(fetcher, env.serializerManager(), dep.serializer().newInstance()));
        if (dep.aggregator().isDefined()) {
            Aggregator aggregator = dep.aggregator().get();
            records = dep.mapSideCombine() ? aggregator.combineCombinersByKey(records, context)
                                           : aggregator.combineValuesByKey(records, context);
        }
        if (dep.keyOrdering().isDefined()) {
            ExternalSorter sorter = new ExternalSorter(context, Option.empty(), Option.empty(),
                dep.keyOrdering(), dep.serializer(), new RowBasedChecksum[0]);
            records = sorter.insertAllAndUpdateMetrics(records);
        }
        return records instanceof InterruptibleIterator ? records : new InterruptibleIterator(context, records);
    }

    /** The map outputs to read, each with its location and the partitions it has bytes for. */
    private List<MapOutputFetcher.Wanted> wanted(SparkEnv env) {
        List<MapOutputFetcher.Wanted> wanted = new ArrayList<>();
        Iterator<Tuple2<BlockManagerId, scala.collection.Seq<Tuple3<BlockId, Object, Object>>>> byLocation =
            env.mapOutputTracker().getMapSizesByExecutorId(handle.shuffleId(), startMapIndex, endMapIndex,
                startPartition, endPartition);
        while (byLocation.hasNext()) {
            Tuple2<BlockManagerId, scala.collection.Seq<Tuple3<BlockId, Object, Object>>> location = byLocation.next();
            MapOutputFetcher.Wanted current = null;
            Iterator<Tuple3<BlockId, Object, Object>> blocks = location._2().iterator();
            while (blocks.hasNext()) {
                Tuple3<BlockId, Object, Object> block = blocks.next();
                ShuffleBlockId id = (ShuffleBlockId) block._1();
                long size = (Long) block._2();
                if (current == null || current.mapTaskId != id.mapId()) {
                    current = new MapOutputFetcher.Wanted(location._1(), id.mapId(), (Integer) block._3());
                    wanted.add(current);
                }
                current.add(id.reduceId(), size);
            }
        }
        return wanted;
    }

    /** Every record of every fetched partition, in the order the fetcher hands them over. */
    private static final class Records extends AbstractIterator<Object> {
        private final MapOutputFetcher fetcher;
        private final SerializerManager serializers;
        private final SerializerInstance serializer;
        private final ShuffleReadMetricsReporter metrics;
        private Iterator<?> current = scala.collection.Iterator$.MODULE$.empty();

        Records(MapOutputFetcher fetcher, SerializerManager serializers, SerializerInstance serializer) {
            this.fetcher = fetcher;
            this.serializers = serializers;
            this.serializer = serializer;
            this.metrics = fetcher.metrics();
        }

        @Override
        public boolean hasNext() {
            while (!current.hasNext()) {
                MapOutputFetcher.Partition next = fetcher.next();
                if (next == null) {
                    return false;
                }
                InputStream in = new ByteArrayInputStream(next.bytes(), next.offset(), next.length());
                current = serializer.deserializeStream(serializers.wrapStream(next.blockId(), in))
                    .asKeyValueIterator();
            }
            return true;
        }

        @Override
        public Object next() {
            if (!hasNext()) {
                throw new java.util.NoSuchElementException();
            }
            metrics.incRecordsRead(1);
            return current.next();
        }
    }
}
