package io.crailpy.spark;

import io.crailpy.client.Crailpy;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.spark.SparkConf;
import org.apache.spark.shuffle.api.ShuffleDriverComponents;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The driver's side: makes the application's directory, deletes a shuffle when Spark drops
 * it and everything at the end, and holds the lease that lets another driver reclaim this
 * application's data if this driver dies without cleaning up.
 */
final class CrailpyDriverComponents implements ShuffleDriverComponents {
    private static final Logger LOG = LoggerFactory.getLogger(CrailpyDriverComponents.class);

    private final SparkConf sparkConf;
    private final ShuffleConf conf;
    private String appId;
    private Leases leases;
    private ScheduledExecutorService renewer;

    CrailpyDriverComponents(SparkConf sparkConf) {
        this.sparkConf = sparkConf;
        this.conf = new ShuffleConf(sparkConf);
    }

    @Override
    public Map<String, String> initializeApplication() {
        appId = sparkConf.getAppId();
        try {
            Crailpy client = Clients.get(conf);
            client.mkdirs(conf.appDir(appId), conf.storageClass);
            leases = new Leases(client, conf);
            leases.renewAndReap(appId);
        } catch (IOException e) {
            throw new UncheckedIOException("crailpy shuffle: cannot set up " + conf.appDir(appId)
                + " on namenode " + conf.namenode + ": " + e.getMessage(), e);
        }
        renewer = Executors.newSingleThreadScheduledExecutor(task -> {
            Thread thread = new Thread(task, "crailpy-lease");
            thread.setDaemon(true);
            return thread;
        });
        long period = Math.max(1, conf.leaseSeconds / 3);
        renewer.scheduleWithFixedDelay(this::renew, period, period, TimeUnit.SECONDS);
        return Map.of();
    }

    private void renew() {
        try {
            leases.renewAndReap(appId);
        } catch (IOException | RuntimeException e) {
            LOG.warn("crailpy shuffle: renewing the lease of {} failed: {}", appId, e.toString());
        }
    }

    @Override
    public void registerShuffle(int shuffleId) {
        try {
            Clients.get(conf).mkdirs(conf.shuffleDir(appId, shuffleId), -1);
        } catch (IOException e) {
            throw new UncheckedIOException("crailpy shuffle: cannot make the directory of shuffle "
                + shuffleId + ": " + e.getMessage(), e);
        }
    }

    @Override
    public void removeShuffle(int shuffleId, boolean blocking) {
        delete(conf.shuffleDir(appId, shuffleId));
    }

    @Override
    public void cleanupApplication() {
        if (renewer != null) {
            renewer.shutdownNow();
        }
        delete(conf.appDir(appId));
    }

    /** Map outputs live in crailpy, not on executors: losing an executor loses none of them. */
    @Override
    public boolean supportsReliableStorage() {
        return true;
    }

    private void delete(String path) {
        try {
            Clients.get(conf).delete(path, true);
        } catch (IOException e) {
            LOG.warn("crailpy shuffle: cannot delete {}: {}", path, e.toString());
        }
    }
}
