package io.tugboat.scheduler;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * RecordIO framing of the Mesos v1 HTTP APIs (docs/cluster-api.md): each record is its length in bytes as decimal
 * ASCII, '\n', then exactly that many bytes. Records arrive split across reads at arbitrary points, a UTF-8
 * character included; the decoder buffers until a record is whole.
 */
public final class RecordIo {
  /** Default largest record accepted (the C++ decoder's limit). */
  public static final int DEFAULT_MAX_RECORD = 16 << 20;

  private RecordIo() {}

  /** A malformed length line or an oversized record: the stream cannot be trusted after it. */
  public static final class FormatException extends IOException {
    private static final long serialVersionUID = 1L;

    FormatException(String message) {
      super(message);
    }
  }

  public static byte[] encode(String record) {
    byte[] body = record.getBytes(StandardCharsets.UTF_8);
    byte[] head = (body.length + "\n").getBytes(StandardCharsets.US_ASCII);
    byte[] out = new byte[head.length + body.length];
    System.arraycopy(head, 0, out, 0, head.length);
    System.arraycopy(body, 0, out, head.length, body.length);
    return out;
  }

  /** Push decoder: feed bytes as they arrive, get the complete records back. Not thread-safe. */
  public static final class Decoder {
    private final int maxRecord;
    private long length = 0;     // digits read so far (while readingLength)
    private int digits = 0;
    private boolean readingLength = true;
    private byte[] record;
    private int filled;

    public Decoder() {
      this(DEFAULT_MAX_RECORD);
    }

    public Decoder(int maxRecord) {
      this.maxRecord = maxRecord;
    }

    public List<byte[]> feed(byte[] buf, int off, int len) throws FormatException {
      List<byte[]> out = new ArrayList<>();
      int end = off + len;
      int i = off;
      while (i < end) {
        if (readingLength) {
          byte c = buf[i++];
          if (c == '\n') {
            if (digits == 0) throw new FormatException("RecordIO: empty length line");
            record = new byte[(int) length];
            filled = 0;
            readingLength = false;
          } else if (c >= '0' && c <= '9') {
            length = length * 10 + (c - '0');
            if (++digits > 10 || length > maxRecord)
              throw new FormatException("RecordIO: record longer than " + maxRecord + " bytes");
            continue;
          } else {
            throw new FormatException("RecordIO: bad character 0x" + Integer.toHexString(c & 0xff) + " in length");
          }
        }
        int n = Math.min(record.length - filled, end - i);
        System.arraycopy(buf, i, record, filled, n);
        filled += n;
        i += n;
        if (filled == record.length) {
          out.add(record);
          record = null;
          readingLength = true;
          length = 0;
          digits = 0;
        }
      }
      return out;
    }

    /** True when bytes of an unfinished record (or its length) are buffered. */
    public boolean midRecord() {
      return !readingLength || digits > 0;
    }
  }

  /** Pull reader over a stream: {@link #next()} blocks for the next whole record. */
  public static final class Reader {
    private final InputStream in;
    private final Decoder decoder;
    private final ArrayDeque<byte[]> ready = new ArrayDeque<>();
    private final byte[] buf = new byte[64 * 1024];

    public Reader(InputStream in) {
      this(in, DEFAULT_MAX_RECORD);
    }

    public Reader(InputStream in, int maxRecord) {
      this.in = in;
      this.decoder = new Decoder(maxRecord);
    }

    /**
     * The next record decoded as UTF-8 (malformed UTF-8 is a FormatException), or null at a clean end of stream.
     * An end of stream inside a record is an IOException ("truncated").
     */
    public String next() throws IOException {
      while (ready.isEmpty()) {
        int n = in.read(buf);
        if (n < 0) {
          if (decoder.midRecord()) throw new IOException("RecordIO: stream ended inside a record");
          return null;
        }
        ready.addAll(decoder.feed(buf, 0, n));
      }
      return utf8(ready.poll());
    }
  }

  static String utf8(byte[] bytes) throws FormatException {
    try {
      return StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(bytes))
          .toString();
    } catch (CharacterCodingException e) {
      throw new FormatException("RecordIO: record is not valid UTF-8");
    }
  }
}
