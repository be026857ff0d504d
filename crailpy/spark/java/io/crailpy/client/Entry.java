package io.crailpy.client;

/** One child of a directory or table, as LIST returns it (docs/protocol.md 4, {@code Entry}). */
public record Entry(String name, NodeInfo info) {
}
