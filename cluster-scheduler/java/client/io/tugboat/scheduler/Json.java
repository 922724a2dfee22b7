package io.tugboat.scheduler;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small, strict JSON (RFC 8259) reader and writer: the JDK has none and the build has no third-party jars.
 *
 * <p>Values map to plain Java types: object = {@code Map<String, Object>} (a LinkedHashMap, insertion order kept;
 * a repeated key keeps the last value), array = {@code List<Object>}, string = String, number = Long when it is
 * written as an integer that fits, Double otherwise, true/false = Boolean, null = null.
 *
 * <p>The reader rejects what RFC 8259 rejects (trailing commas, leading zeros, single quotes, raw control characters
 * in strings, bad escapes, trailing garbage) and nests at most {@link #MAX_DEPTH} deep, so hostile input cannot
 * overflow the stack. The writer accepts Map, List (or any Iterable), CharSequence, Number, Boolean and null; it
 * throws IllegalArgumentException for NaN/infinite numbers and other types.
 */
public final class Json {
  public static final int MAX_DEPTH = 512;

  private Json() {}

  /** Thrown for malformed JSON; the message gives the offset. */
  public static final class ParseException extends Exception {
    private static final long serialVersionUID = 1L;
    private final int offset;

    ParseException(String message, int offset) {
      super(message + " at offset " + offset);
      this.offset = offset;
    }

    public int offset() {
      return offset;
    }
  }

  // ---------------------------------------------------------------- reading

  public static Object parse(String text) throws ParseException {
    Parser p = new Parser(text);
    p.skipWs();
    Object v = p.value(0);
    p.skipWs();
    if (p.pos != text.length()) throw p.error("unexpected character '" + printable(text.charAt(p.pos)) + "'");
    return v;
  }

  /** Parses text that must be a JSON object. */
  public static Map<String, Object> parseObject(String text) throws ParseException {
    Object v = parse(text);
    if (!(v instanceof Map)) throw new ParseException("expected a JSON object", 0);
    return asObject(v);
  }

  private static String printable(char c) {
    return c < 0x20 ? String.format("\\u%04x", (int) c) : String.valueOf(c);
  }

  private static final class Parser {
    final String s;
    int pos;

    Parser(String s) {
      this.s = s;
    }

    ParseException error(String message) {
      return new ParseException(message, pos);
    }

    void skipWs() {
      while (pos < s.length()) {
        char c = s.charAt(pos);
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        pos++;
      }
    }

    Object value(int depth) throws ParseException {
      if (pos >= s.length()) throw error("unexpected end of input");
      char c = s.charAt(pos);
      switch (c) {
        case '{':
          return object(depth + 1);
        case '[':
          return array(depth + 1);
        case '"':
          return string();
        case 't':
          return literal("true", Boolean.TRUE);
        case 'f':
          return literal("false", Boolean.FALSE);
        case 'n':
          return literal("null", null);
        default:
          if (c == '-' || (c >= '0' && c <= '9')) return number();
          throw error("unexpected character '" + printable(c) + "'");
      }
    }

    Object literal(String word, Object v) throws ParseException {
      if (!s.startsWith(word, pos)) throw error("invalid literal");
      pos += word.length();
      return v;
    }

    Map<String, Object> object(int depth) throws ParseException {
      if (depth > MAX_DEPTH) throw error("nested too deeply");
      pos++;  // '{'
      Map<String, Object> m = new LinkedHashMap<>();
      skipWs();
      if (pos < s.length() && s.charAt(pos) == '}') {
        pos++;
        return m;
      }
      while (true) {
        skipWs();
        if (pos >= s.length() || s.charAt(pos) != '"') throw error("expected a string key");
        String key = string();
        skipWs();
        if (pos >= s.length() || s.charAt(pos) != ':') throw error("expected ':'");
        pos++;
        skipWs();
        m.put(key, value(depth));
        skipWs();
        if (pos >= s.length()) throw error("unterminated object");
        char c = s.charAt(pos++);
        if (c == '}') return m;
        if (c != ',') {
          pos--;
          throw error("expected ',' or '}'");
        }
      }
    }

    List<Object> array(int depth) throws ParseException {
      if (depth > MAX_DEPTH) throw error("nested too deeply");
      pos++;  // '['
      List<Object> a = new ArrayList<>();
      skipWs();
      if (pos < s.length() && s.charAt(pos) == ']') {
        pos++;
        return a;
      }
      while (true) {
        skipWs();
        a.add(value(depth));
        skipWs();
        if (pos >= s.length()) throw error("unterminated array");
        char c = s.charAt(pos++);
        if (c == ']') return a;
        if (c != ',') {
          pos--;
          throw error("expected ',' or ']'");
        }
      }
    }

    String string() throws ParseException {
      pos++;  // opening quote
      StringBuilder b = null;  // only when the string has escapes
      int start = pos;
      while (true) {
        if (pos >= s.length()) throw error("unterminated string");
        char c = s.charAt(pos);
        if (c == '"') {
          String out = b == null ? s.substring(start, pos) : b.append(s, start, pos).toString();
          pos++;
          return out;
        }
        if (c < 0x20) throw error("control character in string");
        if (c != '\\') {
          pos++;
          continue;
        }
        if (b == null) b = new StringBuilder();
        b.append(s, start, pos);
        pos++;
        if (pos >= s.length()) throw error("unterminated escape");
        char e = s.charAt(pos++);
        switch (e) {
          case '"': b.append('"'); break;
          case '\\': b.append('\\'); break;
          case '/': b.append('/'); break;
          case 'b': b.append('\b'); break;
          case 'f': b.append('\f'); break;
          case 'n': b.append('\n'); break;
          case 'r': b.append('\r'); break;
          case 't': b.append('\t'); break;
          case 'u': b.append(hex4()); break;  // surrogate pairs come as two escapes: UTF-16 joins them
          default:
            pos--;
            throw error("invalid escape '\\" + printable(e) + "'");
        }
        start = pos;
      }
    }

    char hex4() throws ParseException {
      if (pos + 4 > s.length()) throw error("truncated \\u escape");
      int v = 0;
      for (int i = 0; i < 4; i++) {
        int d = Character.digit(s.charAt(pos + i), 16);
        if (d < 0) throw error("invalid \\u escape");
        v = v * 16 + d;
      }
      pos += 4;
      return (char) v;
    }

    Number number() throws ParseException {
      int start = pos;
      if (s.charAt(pos) == '-') pos++;
      if (pos >= s.length()) throw error("invalid number");
      char c = s.charAt(pos);
      if (c == '0') {
        pos++;
        if (pos < s.length() && isDigit(s.charAt(pos))) throw error("leading zero in number");
      } else if (c >= '1' && c <= '9') {
        while (pos < s.length() && isDigit(s.charAt(pos))) pos++;
      } else {
        throw error("invalid number");
      }
      boolean integral = true;
      if (pos < s.length() && s.charAt(pos) == '.') {
        integral = false;
        pos++;
        if (pos >= s.length() || !isDigit(s.charAt(pos))) throw error("digit expected after '.'");
        while (pos < s.length() && isDigit(s.charAt(pos))) pos++;
      }
      if (pos < s.length() && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
        integral = false;
        pos++;
        if (pos < s.length() && (s.charAt(pos) == '+' || s.charAt(pos) == '-')) pos++;
        if (pos >= s.length() || !isDigit(s.charAt(pos))) throw error("digit expected in exponent");
        while (pos < s.length() && isDigit(s.charAt(pos))) pos++;
      }
      String text = s.substring(start, pos);
      if (integral && !text.equals("-0")) {
        // 19 digits may still overflow a long; BigInteger settles it.
        if (text.length() <= 18) return Long.parseLong(text);
        BigInteger big = new BigInteger(text);
        if (big.bitLength() < 64) return big.longValue();
      }
      return Double.parseDouble(text);
    }

    static boolean isDigit(char c) {
      return c >= '0' && c <= '9';
    }
  }

  // ---------------------------------------------------------------- writing

  public static String write(Object value) {
    StringBuilder b = new StringBuilder();
    write(b, value, 0);
    return b.toString();
  }

  private static void write(StringBuilder b, Object v, int depth) {
    if (depth > MAX_DEPTH) throw new IllegalArgumentException("JSON value nested too deeply (a cycle?)");
    if (v == null) {
      b.append("null");
    } else if (v instanceof CharSequence) {
      quote(b, v.toString());
    } else if (v instanceof Boolean) {
      b.append(v.toString());
    } else if (v instanceof Double || v instanceof Float) {
      double d = ((Number) v).doubleValue();
      if (Double.isNaN(d) || Double.isInfinite(d)) throw new IllegalArgumentException("JSON has no NaN or Infinity");
      // Whole numbers print without ".0" (32 rather than 32.0); exact below 2^53.
      if (d == Math.rint(d) && Math.abs(d) < 9.007199254740992E15 && !(d == 0 && 1 / d < 0)) {
        b.append((long) d);
      } else {
        b.append(Double.toString(d));  // e.g. 0.1, 1.0E-5, -0.0: all valid JSON
      }
    } else if (v instanceof Long || v instanceof Integer || v instanceof Short || v instanceof Byte
        || v instanceof BigInteger) {
      b.append(v.toString());
    } else if (v instanceof BigDecimal) {
      b.append(((BigDecimal) v).toString());
    } else if (v instanceof Map) {
      b.append('{');
      boolean first = true;
      for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
        if (!(e.getKey() instanceof String)) throw new IllegalArgumentException("JSON object keys must be strings");
        if (!first) b.append(',');
        first = false;
        quote(b, (String) e.getKey());
        b.append(':');
        write(b, e.getValue(), depth + 1);
      }
      b.append('}');
    } else if (v instanceof Iterable) {
      b.append('[');
      boolean first = true;
      for (Object e : (Iterable<?>) v) {
        if (!first) b.append(',');
        first = false;
        write(b, e, depth + 1);
      }
      b.append(']');
    } else {
      throw new IllegalArgumentException("cannot write " + v.getClass().getName() + " as JSON");
    }
  }

  private static void quote(StringBuilder b, String s) {
    b.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"': b.append("\\\""); break;
        case '\\': b.append("\\\\"); break;
        case '\n': b.append("\\n"); break;
        case '\r': b.append("\\r"); break;
        case '\t': b.append("\\t"); break;
        case '\b': b.append("\\b"); break;
        case '\f': b.append("\\f"); break;
        default:
          if (c < 0x20) {
            appendEscape(b, c);
          } else if (Character.isSurrogate(c)) {
            // A valid pair goes out raw (UTF-8 on the wire); a lone surrogate cannot be encoded, so escape it.
            if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
              b.append(c).append(s.charAt(++i));
            } else {
              appendEscape(b, c);
            }
          } else {
            b.append(c);
          }
      }
    }
    b.append('"');
  }

  private static void appendEscape(StringBuilder b, char c) {
    b.append(String.format("\\u%04x", (int) c));
  }

  // ---------------------------------------------------------------- building and reading helpers

  /** {@code object("type", "ACCEPT", "accept", ...)}: a LinkedHashMap from alternating keys and values. */
  public static Map<String, Object> object(Object... keysAndValues) {
    if (keysAndValues.length % 2 != 0) throw new IllegalArgumentException("object() needs key/value pairs");
    Map<String, Object> m = new LinkedHashMap<>();
    for (int i = 0; i < keysAndValues.length; i += 2) m.put((String) keysAndValues[i], keysAndValues[i + 1]);
    return m;
  }

  /** The Mesos id form {"value": id}. */
  public static Map<String, Object> id(String value) {
    return object("value", value);
  }

  /** The value at a path of object keys (String) and array indexes (Integer); null when any step is missing. */
  public static Object at(Object root, Object... path) {
    Object cur = root;
    for (Object step : path) {
      if (step instanceof String && cur instanceof Map) {
        cur = ((Map<?, ?>) cur).get(step);
      } else if (step instanceof Integer && cur instanceof List) {
        List<?> l = (List<?>) cur;
        int i = (Integer) step;
        cur = i >= 0 && i < l.size() ? l.get(i) : null;
      } else {
        return null;
      }
    }
    return cur;
  }

  /** The string at a path, or null when missing or not a string. */
  public static String string(Object root, Object... path) {
    Object v = at(root, path);
    return v instanceof String ? (String) v : null;
  }

  /** The number at a path, or {@code dflt} when missing or not a number. */
  public static double number(Object root, double dflt, Object... path) {
    Object v = at(root, path);
    return v instanceof Number ? ((Number) v).doubleValue() : dflt;
  }

  /** {"value": "x"} at a path -> "x", or null. */
  public static String idAt(Object root, Object... path) {
    return string(at(root, path), "value");
  }

  @SuppressWarnings("unchecked")
  public static Map<String, Object> asObject(Object v) {
    return v instanceof Map ? (Map<String, Object>) v : null;
  }

  @SuppressWarnings("unchecked")
  public static List<Object> asArray(Object v) {
    return v instanceof List ? (List<Object>) v : List.of();
  }
}
