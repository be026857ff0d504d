package io.crailpy.client;

/**
 * A namenode or datanode could not be reached, did not answer in time, or dropped the
 * connection; every request in flight on that connection failed with it. Client-side only
 * (Python's {@code Unreachable}), hence status {@code INTERNAL} as there.
 */
public class UnreachableException extends CrailpyException {
    private static final long serialVersionUID = 1L;

    public UnreachableException(String message, Throwable cause) {
        super(Status.INTERNAL, message, cause);
    }
}
