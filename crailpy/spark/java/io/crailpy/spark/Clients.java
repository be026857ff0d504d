package io.crailpy.spark;

import io.crailpy.client.Crailpy;
import java.io.IOException;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * One crailpy client per JVM and namenode, shared by every task of an executor: its
 * connections are pipelined and thread-safe, so tasks need not each pay for their own.
 * The fetch pool that reduce tasks share lives here for the same reason.
 */
final class Clients {
    private static final Map<String, Crailpy> CLIENTS = new HashMap<>();
    private static ExecutorService fetchPool;

    private Clients() {}

    static synchronized Crailpy get(ShuffleConf conf) throws IOException {
        Crailpy client = CLIENTS.get(conf.namenode);
        if (client == null) {
            client = Crailpy.connect(conf.namenode);
            CLIENTS.put(conf.namenode, client);
        }
        return client;
    }

    static synchronized ExecutorService fetchPool(ShuffleConf conf) {
        if (fetchPool == null) {
            fetchPool = Executors.newFixedThreadPool(conf.fetchThreads, task -> {
                Thread thread = new Thread(task, "crailpy-fetch");
                thread.setDaemon(true);
                return thread;
            });
        }
        return fetchPool;
    }

    /** Close every client (the shuffle manager stops with its SparkEnv). */
    static synchronized void closeAll() {
        CLIENTS.values().forEach(Crailpy::close);
        CLIENTS.clear();
        if (fetchPool != null) {
            fetchPool.shutdownNow();
            fetchPool = null;
        }
    }
}
