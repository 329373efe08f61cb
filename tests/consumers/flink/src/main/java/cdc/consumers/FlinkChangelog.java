package cdc.consumers;

import java.lang.reflect.Array;
import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;

/**
 * Reads one Kafka topic of Debezium-shaped change events with Flink SQL and prints every
 * changelog row, one JSON object a line: {"op": "+I", "row": [...]}; "op" is Flink's RowKind
 * (+I, -U, +U, -D). The job is bounded (earliest to latest offset), so it ends by itself.
 *
 * <pre>
 * java -cp ... cdc.consumers.FlinkChangelog --bootstrap HOST:PORT --topic T \
 *     --columns "id BIGINT, d DATE, ..." [--option key=value]...
 * </pre>
 *
 * Options are added to (or override) the table's WITH clause, e.g.
 * {@code --option debezium-json.ignore-parse-errors=true}.
 *
 * Values: numbers as JSON numbers (NaN and infinities as strings), DECIMAL as a plain decimal
 * string, BYTES as base64, DATE as ISO (sign on years before 0 and after 9999), TIME as
 * HH:mm:ss.SSSSSS, TIMESTAMP as date'T'time, TIMESTAMP_LTZ the same in UTC with a Z, arrays as
 * JSON arrays, the rest as strings.
 */
public final class FlinkChangelog {
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("HH:mm:ss.SSSSSS");

    private FlinkChangelog() {}

    public static void main(String[] args) throws Exception {
        // The rows go to the real stdout in UTF-8 (Java 17 would use the locale's charset);
        // anything else that prints to System.out goes to stderr instead.
        PrintStream rowsOut = new PrintStream(
                new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        System.setOut(System.err);
        String bootstrap = null;
        String topic = null;
        String columns = null;
        Map<String, String> options = new TreeMap<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (i + 1 >= args.length) {
                usage("missing value for " + arg);
            }
            String value = args[++i];
            switch (arg) {
                case "--bootstrap" -> bootstrap = value;
                case "--topic" -> topic = value;
                case "--columns" -> columns = value;
                case "--option" -> {
                    int eq = value.indexOf('=');
                    if (eq <= 0) {
                        usage("--option wants key=value, not " + value);
                    }
                    options.put(value.substring(0, eq), value.substring(eq + 1));
                }
                default -> usage("unknown argument " + arg);
            }
        }
        if (bootstrap == null || topic == null || columns == null) {
            usage("--bootstrap, --topic and --columns are required");
        }

        Map<String, String> with = new TreeMap<>();
        with.put("connector", "kafka");
        with.put("topic", topic);
        with.put("properties.bootstrap.servers", bootstrap);
        with.put("properties.group.id", "cdc-flink-changelog-" + topic);
        with.put("scan.startup.mode", "earliest-offset");
        with.put("scan.bounded.mode", "latest-offset");
        with.put("format", "debezium-json");
        with.putAll(options);

        StringBuilder ddl = new StringBuilder("CREATE TABLE changes (").append(columns).append(") WITH (");
        String sep = "";
        for (Map.Entry<String, String> e : with.entrySet()) {
            ddl.append(sep).append(literal(e.getKey())).append(" = ").append(literal(e.getValue()));
            sep = ", ";
        }
        ddl.append(")");

        phase("arguments read");
        EnvironmentSettings settings = EnvironmentSettings.inStreamingMode();
        TableEnvironment env = TableEnvironment.create(settings);
        // One partition a topic here: one reader is enough, and it keeps the start short.
        env.getConfig().set("parallelism.default", "1");
        env.executeSql(ddl.toString());
        phase("table created");
        TableResult result = env.executeSql("SELECT * FROM changes");
        phase("job submitted");
        StringBuilder line = new StringBuilder();
        long count = 0;
        try (CloseableIterator<Row> rows = result.collect()) {
            while (rows.hasNext()) {
                Row row = rows.next();
                line.setLength(0);
                line.append("{\"op\": \"").append(row.getKind().shortString()).append("\", \"row\": [");
                for (int i = 0; i < row.getArity(); i++) {
                    if (i > 0) {
                        line.append(", ");
                    }
                    json(line, row.getField(i));
                }
                line.append("]}");
                if (count++ == 0) {
                    phase("first row");
                }
                rowsOut.println(line);
            }
        }
        rowsOut.flush();
        phase("job done, " + count + " rows");
    }

    /** Milliseconds since the JVM started, on stderr: where the time of a run goes. */
    private static void phase(String what) {
        long ms = System.currentTimeMillis()
                - java.lang.management.ManagementFactory.getRuntimeMXBean().getStartTime();
        System.err.println("flink-changelog: " + ms + " ms: " + what);
    }

    private static void usage(String why) {
        System.err.println("FlinkChangelog: " + why);
        System.err.println(
                "usage: FlinkChangelog --bootstrap HOST:PORT --topic T --columns 'a INT, ...'"
                        + " [--option key=value]...");
        System.exit(2);
    }

    /** A SQL string literal. */
    private static String literal(String s) {
        return "'" + s.replace("'", "''") + "'";
    }

    private static void json(StringBuilder out, Object value) {
        if (value == null) {
            out.append("null");
        } else if (value instanceof Boolean || value instanceof Integer || value instanceof Long
                || value instanceof Short || value instanceof Byte) {
            out.append(value);
        } else if (value instanceof Double d) {
            number(out, d.isNaN() || d.isInfinite(), d.toString());
        } else if (value instanceof Float f) {
            number(out, f.isNaN() || f.isInfinite(), f.toString());
        } else if (value instanceof BigDecimal b) {
            string(out, b.toPlainString());
        } else if (value instanceof byte[] bytes) {
            string(out, Base64.getEncoder().encodeToString(bytes));
        } else if (value instanceof LocalDate d) {
            string(out, d.toString());
        } else if (value instanceof LocalTime t) {
            string(out, TIME.format(t));
        } else if (value instanceof LocalDateTime t) {
            string(out, t.toLocalDate() + "T" + TIME.format(t.toLocalTime()));
        } else if (value instanceof Instant i) {
            LocalDateTime t = LocalDateTime.ofInstant(i, ZoneOffset.UTC);
            string(out, t.toLocalDate() + "T" + TIME.format(t.toLocalTime()) + "Z");
        } else if (value.getClass().isArray()) {
            out.append('[');
            for (int i = 0; i < Array.getLength(value); i++) {
                if (i > 0) {
                    out.append(", ");
                }
                json(out, Array.get(value, i));
            }
            out.append(']');
        } else if (value instanceof List<?> list) {
            json(out, new ArrayList<>(list).toArray());
        } else {
            string(out, value.toString());
        }
    }

    private static void number(StringBuilder out, boolean special, String text) {
        if (special) {
            string(out, text);
        } else {
            out.append(text);
        }
    }

    private static void string(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }
}
