// Prints, one JSON object a line, the Kafka Connect schemas Debezium's PostgreSQL connector gives
// its records other than row changes (transaction topic key and value; logical decoding message
// key and value, under each binary.handling.mode), as JsonConverter writes them:
// tests/fixtures/debezium/debezium-other-schemas.jsonl. Run as a single-file source program on
// Debezium's classpath (bench/debezium, built by bench/debezium_engine.py):
//   java -cp 'bench/debezium/target/lib/*' tests/consumers/connect/DebeziumSchemas.java \
//       > tests/fixtures/debezium/debezium-other-schemas.jsonl
import java.util.Map;

import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.json.JsonConverter;

import io.debezium.config.CommonConnectorConfig.BinaryHandlingMode;
import io.debezium.config.Configuration;
import io.debezium.connector.postgresql.PostgresConnectorConfig;
import io.debezium.connector.postgresql.PostgresSchemaFactory;
import io.debezium.schema.SchemaNameAdjuster;

public class DebeziumSchemas {
    public static void main(String[] args) {
        JsonConverter converter = new JsonConverter();
        converter.configure(Map.of("schemas.enable", "true"), false);
        SchemaNameAdjuster names = SchemaNameAdjuster.NO_OP; // schema.name.adjustment.mode=none
        PostgresConnectorConfig config = new PostgresConnectorConfig(Configuration.create()
                .with("topic.prefix", "p").with("database.hostname", "h").with("database.user", "u")
                .with("database.dbname", "d").with("plugin.name", "pgoutput").build());
        PostgresSchemaFactory factory = PostgresSchemaFactory.get();
        print(converter, "transaction.key", factory.transactionKeySchema(names));
        print(converter, "transaction.value", factory.transactionValueSchema(names));
        print(converter, "message.key", factory.logicalDecodingMessageMonitorKeySchema(names));
        for (BinaryHandlingMode mode : BinaryHandlingMode.values()) {
            print(converter, "message.value." + mode.getValue(),
                    factory.logicalDecodingMessageMonitorValueSchema(names, config, mode));
        }
    }

    private static void print(JsonConverter converter, String what, Schema schema) {
        System.out.println("{\"what\":\"" + what + "\",\"schema\":" + converter.asJsonSchema(schema) + "}");
    }
}
