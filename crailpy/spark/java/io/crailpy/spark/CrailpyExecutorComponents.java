package io.crailpy.spark;

import java.io.IOException;
import java.util.Map;
import org.apache.spark.SparkConf;
import org.apache.spark.shuffle.api.ShuffleExecutorComponents;
import org.apache.spark.shuffle.api.ShuffleMapOutputWriter;

/** An executor's side of the plug-in: one map output writer per map task attempt. */
final class CrailpyExecutorComponents implements ShuffleExecutorComponents {
    private final ShuffleConf conf;
    private String appId;

    CrailpyExecutorComponents(SparkConf sparkConf) {
        conf = new ShuffleConf(sparkConf);
    }

    @Override
    public void initializeExecutor(String appId, String execId, Map<String, String> extraConfigs) {
        this.appId = appId;
    }

    @Override
    public ShuffleMapOutputWriter createMapOutputWriter(int shuffleId, long mapTaskId, int partitions)
            throws IOException {
        String path = conf.mapFile(appId, shuffleId, mapTaskId);
        return new CrailpyMapOutputWriter(Clients.get(conf).create(path, false), partitions);
    }
}
