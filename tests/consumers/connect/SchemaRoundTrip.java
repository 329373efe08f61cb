// Reads records in JsonConverter's {"schema","payload"} layout, one a line from the file named
// by the first argument, through Kafka Connect's own JsonConverter (schemas enabled) and writes
// them back: prints "same" when the schema JSON it writes is byte for byte the one it read,
// else "diff <line> <what it wrote>". A payload it cannot read fails the program (DataException).
// Run as a single-file source program: java -cp 'LIBS/*' SchemaRoundTrip.java FILE
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.json.JsonConverter;

public class SchemaRoundTrip {
    public static void main(String[] args) throws Exception {
        JsonConverter converter = new JsonConverter();
        converter.configure(Map.of("schemas.enable", "true"), false);
        int line = 0;
        for (String record : Files.readAllLines(Path.of(args[0]), StandardCharsets.UTF_8)) {
            line++;
            SchemaAndValue read = converter.toConnectData("t", record.getBytes(StandardCharsets.UTF_8));
            String written = new String(
                    converter.fromConnectData("t", read.schema(), read.value()), StandardCharsets.UTF_8);
            String schemaIn = record.substring(0, record.indexOf(",\"payload\":"));
            String schemaOut = written.substring(0, written.indexOf(",\"payload\":"));
            System.out.println(schemaIn.equals(schemaOut) ? "same" : "diff " + line + " " + schemaOut);
        }
    }
}
