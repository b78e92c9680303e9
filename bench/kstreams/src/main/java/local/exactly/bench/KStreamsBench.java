package local.exactly.bench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Kafka Streams baseline for the exactly benchmarks: the same word count and copy
 * as exactly's own, run with Kafka Streams' defaults as a long-running member of
 * the consumer group {@code --app-id}.
 *
 * <p>Prints {@code kstreams running} on stdout once the client first reaches
 * RUNNING; on SIGTERM/SIGINT closes the client (30 s at most), prints
 * {@code kstreams stopped} and exits 0. If Kafka Streams fails (state ERROR), the
 * error goes to stderr and the process exits 1. Bad usage exits 2.
 */
public final class KStreamsBench {
    private static final String USAGE =
        "usage: KStreamsBench wordcount|copy --brokers B --app-id A --input T --output T"
            + " --state-dir D [--commit-interval-ms N (100)] [--threads N (1)]"
            + " [--guarantee exactly_once_v2|at_least_once (exactly_once_v2)]";

    /** Set before a System.exit of our own, so the shutdown hook leaves the exit code alone. */
    private static volatile boolean selfExit = false;
    /** Set once Kafka Streams went to ERROR: a signal during the error exit still exits 1. */
    private static volatile boolean failing = false;

    private KStreamsBench() {}

    private static final class Options {
        String command;
        String brokers;
        String appId;
        String input;
        String output;
        String stateDir;
        long commitIntervalMs = 100;
        int threads = 1;
        String guarantee = StreamsConfig.EXACTLY_ONCE_V2;
    }

    private static void usageError(String why) {
        if (why != null) System.err.println("kstreams: " + why);
        System.err.println(USAGE);
        System.exit(2);
    }

    private static Options parse(String[] args) {
        if (args.length == 0) usageError("missing command (wordcount or copy)");
        if (args[0].equals("-h") || args[0].equals("--help") || args[0].equals("help")) {
            System.out.println(USAGE);
            System.exit(0);
        }
        Options o = new Options();
        o.command = args[0];
        if (!o.command.equals("wordcount") && !o.command.equals("copy")) {
            usageError("unknown command '" + o.command + "' (wordcount or copy)");
        }
        for (int i = 1; i < args.length; i++) {
            String flag = args[i];
            String value;
            int eq = flag.indexOf('=');
            if (flag.startsWith("--") && eq > 0) {
                value = flag.substring(eq + 1);
                flag = flag.substring(0, eq);
            } else {
                if (i + 1 >= args.length) {
                    usageError(flag.startsWith("--") ? "missing value for " + flag : "unexpected argument '" + flag + "'");
                }
                value = args[++i];
            }
            switch (flag) {
                case "--brokers": o.brokers = value; break;
                case "--app-id": o.appId = value; break;
                case "--input": o.input = value; break;
                case "--output": o.output = value; break;
                case "--state-dir": o.stateDir = value; break;
                case "--commit-interval-ms": o.commitIntervalMs = number(flag, value, 0); break;
                case "--threads": o.threads = (int) number(flag, value, 1); break;
                case "--guarantee":
                    if (!value.equals(StreamsConfig.EXACTLY_ONCE_V2) && !value.equals(StreamsConfig.AT_LEAST_ONCE)) {
                        usageError("--guarantee must be exactly_once_v2 or at_least_once (got '" + value + "')");
                    }
                    o.guarantee = value;
                    break;
                default: usageError("unknown flag '" + flag + "'");
            }
        }
        List<String> missing = new ArrayList<>();
        if (o.brokers == null || o.brokers.isEmpty()) missing.add("--brokers");
        if (o.appId == null || o.appId.isEmpty()) missing.add("--app-id");
        if (o.input == null || o.input.isEmpty()) missing.add("--input");
        if (o.output == null || o.output.isEmpty()) missing.add("--output");
        if (o.stateDir == null || o.stateDir.isEmpty()) missing.add("--state-dir");
        if (!missing.isEmpty()) usageError("missing required flag(s): " + String.join(" ", missing));
        return o;
    }

    private static long number(String flag, String value, long min) {
        long n = 0;
        try {
            n = Long.parseLong(value);
        } catch (NumberFormatException e) {
            usageError(flag + " needs a number (got '" + value + "')");
        }
        if (n < min || n > Integer.MAX_VALUE) usageError(flag + " must be between " + min + " and " + Integer.MAX_VALUE + " (got " + n + ")");
        return n;
    }

    /** The words of a line: maximal runs of letters/digits (by code point), lower-cased. */
    static List<String> words(String line) {
        List<String> out = new ArrayList<>();
        if (line == null) return out;
        int n = line.length();
        int start = -1;
        for (int i = 0; i < n; ) {
            int cp = line.codePointAt(i);
            int next = i + Character.charCount(cp);
            if (Character.isLetterOrDigit(cp)) {
                if (start < 0) start = i;
            } else if (start >= 0) {
                out.add(line.substring(start, i).toLowerCase(Locale.ROOT));
                start = -1;
            }
            i = next;
        }
        if (start >= 0) out.add(line.substring(start).toLowerCase(Locale.ROOT));
        return out;
    }

    private static Topology wordCount(String input, String output) {
        StreamsBuilder b = new StreamsBuilder();
        KTable<String, Long> counts = b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
            .flatMapValues(line -> words(line))
            .groupBy((k, w) -> w, Grouped.with("words", Serdes.String(), Serdes.String()))
            .count(Materialized.as("counts"));
        counts.toStream()
            .mapValues(count -> String.valueOf(count))
            .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return b.build();
    }

    private static Topology copy(String input, String output) {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
            .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
        return b.build();
    }

    public static void main(String[] args) throws InterruptedException {
        // slf4j-simple: WARN and above to stderr unless the caller says otherwise (-D...)
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        if (System.getProperty("org.slf4j.simpleLogger.logFile") == null) {
            System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        }
        if (System.getProperty("org.slf4j.simpleLogger.showDateTime") == null) {
            System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
        }

        Options o = parse(args);

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, o.appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, o.brokers);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, o.guarantee);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, o.commitIntervalMs);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, o.threads);
        p.put(StreamsConfig.STATE_DIR_CONFIG, o.stateDir);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // Everything else (record cache, producer/consumer settings, ...) stays at Kafka Streams' defaults.

        Topology topology = o.command.equals("wordcount") ? wordCount(o.input, o.output) : copy(o.input, o.output);
        KafkaStreams streams = new KafkaStreams(topology, p);

        AtomicBoolean announced = new AtomicBoolean(false);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CountDownLatch failed = new CountDownLatch(1);

        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("kstreams: error: uncaught exception in a stream thread (shutting the client down):");
            e.printStackTrace(System.err);
            failure.compareAndSet(null, e);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING && announced.compareAndSet(false, true)) {
                System.out.println("kstreams running");
                System.out.flush();
            }
            if (now == KafkaStreams.State.ERROR) failed.countDown();
        });

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            if (selfExit) return; // our own System.exit: its code stands
            boolean clean = streams.close(Duration.ofSeconds(30));
            if (!clean) System.err.println("kstreams: warning: Kafka Streams did not close within 30 s");
            System.out.println("kstreams stopped");
            System.out.flush();
            System.err.flush();
            // A signal's exit code would be 128+n; a clean stop on SIGTERM/SIGINT exits 0.
            Runtime.getRuntime().halt(failing ? 1 : 0);
        }, "kstreams-shutdown"));

        try {
            streams.start();
        } catch (RuntimeException e) {
            System.err.println("kstreams: error: cannot start Kafka Streams: " + e);
            e.printStackTrace(System.err);
            selfExit = true;
            System.exit(1);
        }

        failed.await(); // until ERROR; a signal ends the JVM through the shutdown hook
        failing = true;
        Throwable e = failure.get();
        System.err.println("kstreams: error: Kafka Streams went to state ERROR"
            + (e == null ? "" : ": " + e));
        streams.close(Duration.ofSeconds(30));
        System.err.flush();
        selfExit = true;
        System.exit(1);
    }
}
