package io.crailpy.client;

/** A committed part of a multifile (docs/protocol.md 4, {@code Part}): a node id and its size. */
public record Part(long id, long size) {
}
