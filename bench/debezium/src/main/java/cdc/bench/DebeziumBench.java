package cdc.bench;

import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Json;
import java.io.FileReader;
import java.io.Reader;
import java.lang.management.ManagementFactory;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import javax.management.MBeanServer;
import javax.management.ObjectName;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Debezium's PostgreSQL connector in the embedded engine, publishing every change record to
 * Kafka with its own KafkaProducer, at least once: a batch is marked processed (so its LSN is
 * confirmed to PostgreSQL at the next offset flush) only after Kafka acked all of it.
 *
 * <p>argv[0] is a .properties file. Keys starting with {@code bench.kafka.} go to the producer
 * (prefix stripped, e.g. {@code bench.kafka.bootstrap.servers}); other {@code bench.} keys are
 * ours: {@code bench.report.interval.ms}, {@code bench.topic.partitions} and {@code
 * bench.topic.replication.factor} (a topic is created at its first record, as cdc does, since
 * brokers may not auto-create topics). Every other key goes to the engine as it is.
 *
 * <p>stdout: "started" when the task is up, "streaming" once the connector's streaming metrics
 * say connected, "published N records, T ms" every 10 s, "stopped, published N records" at exit.
 * SIGTERM closes the engine (which commits offsets), then the producer.
 */
public final class DebeziumBench {
  private static final String KAFKA = "bench.kafka.";

  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      System.err.println("usage: DebeziumBench <file.properties>");
      System.exit(2);
    }
    Properties all = new Properties();
    try (Reader in = new FileReader(args[0])) {
      all.load(in);
    }
    Properties engineProps = new Properties();
    Properties producerProps = new Properties();
    producerProps.put("acks", "all");
    producerProps.put("enable.idempotence", "true");
    producerProps.put("linger.ms", "5");
    producerProps.put("batch.size", "131072");
    producerProps.put("compression.type", "none"); // as cdc's default
    for (String key : all.stringPropertyNames()) {
      if (key.startsWith(KAFKA)) {
        producerProps.put(key.substring(KAFKA.length()), all.getProperty(key));
      } else if (!key.startsWith("bench.")) {
        engineProps.put(key, all.getProperty(key));
      }
    }
    long reportMs = Long.parseLong(all.getProperty("bench.report.interval.ms", "10000"));
    int partitions = Integer.parseInt(all.getProperty("bench.topic.partitions", "1"));
    short replicas = Short.parseShort(all.getProperty("bench.topic.replication.factor", "1"));
    Properties adminProps = new Properties();
    for (String key : AdminClientConfig.configNames()) {
      if (producerProps.containsKey(key)) {
        adminProps.put(key, producerProps.get(key));
      }
    }
    Admin admin = Admin.create(adminProps);
    Set<String> topics = ConcurrentHashMap.newKeySet();
    KafkaProducer<String, String> producer =
        new KafkaProducer<>(producerProps, new StringSerializer(), new StringSerializer());
    AtomicLong published = new AtomicLong();
    AtomicBoolean failed = new AtomicBoolean();
    CountDownLatch done = new CountDownLatch(1);

    DebeziumEngine<ChangeEvent<String, String>> engine =
        DebeziumEngine.create(Json.class)
            .using(engineProps)
            .using(new DebeziumEngine.ConnectorCallback() {
                  @Override
                  public void taskStarted() {
                    say("started");
                  }
                })
            .using((boolean success, String message, Throwable error) -> {
                  if (!success) {
                    failed.set(true);
                    System.err.println("engine failed: " + message);
                    if (error != null) {
                      error.printStackTrace();
                    }
                  }
                  done.countDown();
                })
            .notifying((List<ChangeEvent<String, String>> records,
                    DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer) -> {
                  List<Future<RecordMetadata>> acks = new ArrayList<>(records.size());
                  for (ChangeEvent<String, String> r : records) {
                    if (topics.add(r.destination())) {
                      createTopic(admin, r.destination(), partitions, replicas);
                    }
                    if (r.value() != null) { // tombstones are off; skip any all the same
                      acks.add(producer.send(new ProducerRecord<>(r.destination(), r.key(), r.value())));
                    }
                  }
                  producer.flush(); // we wait for every ack anyway: don't linger
                  for (Future<RecordMetadata> ack : acks) {
                    try {
                      ack.get();
                    } catch (ExecutionException e) {
                      throw new RuntimeException("Kafka did not take a record", e.getCause());
                    }
                  }
                  for (ChangeEvent<String, String> r : records) {
                    committer.markProcessed(r);
                  }
                  committer.markBatchFinished();
                  published.addAndGet(acks.size());
                })
            .build();

    ExecutorService runner = Executors.newSingleThreadExecutor();
    ScheduledExecutorService ticker = Executors.newSingleThreadScheduledExecutor();
    AtomicBoolean streaming = new AtomicBoolean();
    String metrics = "debezium.postgres:type=connector-metrics,context=streaming,server="
        + engineProps.getProperty("topic.prefix") + ",*";
    ticker.scheduleAtFixedRate(() -> {
          if (!streaming.get() && connected(metrics)) {
            streaming.set(true);
            say("streaming");
          }
        }, 50, 50, TimeUnit.MILLISECONDS);
    long t0 = System.nanoTime();
    ticker.scheduleAtFixedRate(() -> say("published " + published.get() + " records, "
            + (System.nanoTime() - t0) / 1_000_000 + " ms"), reportMs, reportMs, TimeUnit.MILLISECONDS);

    AtomicBoolean stopping = new AtomicBoolean();
    Runnable shutdown = () -> {
      ticker.shutdownNow();
      try {
        engine.close(); // stops the task, commits the offsets of what was marked processed
        done.await(30, TimeUnit.SECONDS);
        runner.shutdown();
        runner.awaitTermination(30, TimeUnit.SECONDS);
      } catch (Exception e) {
        e.printStackTrace();
      }
      producer.close(); // flushes whatever is left
      admin.close();
      say("stopped, published " + published.get() + " records");
    };
    Thread hook = new Thread(() -> {
      stopping.set(true);
      shutdown.run();
    });
    Runtime.getRuntime().addShutdownHook(hook);
    runner.execute(engine);
    done.await();
    if (!stopping.get()) { // the engine ended by itself: an error, or a bad config
      Runtime.getRuntime().removeShutdownHook(hook);
      shutdown.run();
      System.exit(failed.get() ? 1 : 0);
    }
  }

  private static void createTopic(Admin admin, String topic, int partitions, short replicas)
      throws InterruptedException {
    try {
      admin.createTopics(List.of(new NewTopic(topic, partitions, replicas))).all().get();
    } catch (ExecutionException e) {
      if (!(e.getCause() instanceof TopicExistsException)) {
        throw new RuntimeException("cannot create topic " + topic, e.getCause());
      }
    }
  }

  /** True once a Debezium streaming metrics MBean matching the pattern says Connected. */
  private static boolean connected(String pattern) {
    try {
      MBeanServer mbs = ManagementFactory.getPlatformMBeanServer();
      for (ObjectName name : mbs.queryNames(new ObjectName(pattern), null)) {
        if (Boolean.TRUE.equals(mbs.getAttribute(name, "Connected"))) {
          return true;
        }
      }
    } catch (Exception e) { // not registered yet
    }
    return false;
  }

  private static void say(String line) {
    System.out.println(line); // System.out flushes at each line
  }
}
