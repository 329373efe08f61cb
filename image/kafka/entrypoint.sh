#!/bin/bash
# Writes server.properties (defaults below; each KAFKA_<NAME> variable sets <name>, with _ for .,
# __ for _ and ___ for -, as Apache's image reads them), formats the storage on the first start,
# then runs the broker in the foreground.
set -euo pipefail
props=/var/lib/kafka/server.properties
data=/var/lib/kafka/data
declare -A cfg=(
    [process.roles]=broker,controller
    [node.id]=1
    [controller.quorum.voters]=1@127.0.0.1:9093
    [listeners]=PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093
    [advertised.listeners]=PLAINTEXT://localhost:9092
    [listener.security.protocol.map]=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
    [controller.listener.names]=CONTROLLER
    [inter.broker.listener.name]=PLAINTEXT
    [log.dirs]=$data
    [num.partitions]=1
    [default.replication.factor]=1
    [min.insync.replicas]=1
    [offsets.topic.replication.factor]=1
    [offsets.topic.num.partitions]=10
    [transaction.state.log.replication.factor]=1
    [transaction.state.log.min.isr]=1
    [transaction.state.log.num.partitions]=10
    [share.coordinator.state.topic.replication.factor]=1
    [share.coordinator.state.topic.min.isr]=1
    [group.initial.rebalance.delay.ms]=0
    # cdc creates its topics itself; a typo must not create one.
    [auto.create.topics.enable]=false
)
while IFS='=' read -r var value; do
    case "$var" in KAFKA_HEAP_OPTS | KAFKA_JVM_OPTS) continue ;; esac
    name=${var#KAFKA_}
    name=${name,,}
    name=${name//___/-}
    name=${name//__/@}
    name=${name//_/.}
    cfg[${name//@/_}]=$value
done < <(env | grep '^KAFKA_[A-Z0-9_]*=' || true)
for key in "${!cfg[@]}"; do printf '%s=%s\n' "$key" "${cfg[$key]}"; done | sort >"$props"

classpath='/opt/kafka/libs/*'
log4j=-Dlog4j2.configurationFile=/opt/kafka/log4j2.properties
if [ ! -f "$data/meta.properties" ]; then
    # Kafka's own shape of cluster id (base64url of 16 random bytes), never starting with "-":
    # the storage tool would take it for an option.
    cluster_id=${CLUSTER_ID:-}
    while [ -z "$cluster_id" ] || [ "${cluster_id:0:1}" = - ]; do
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    java -cp "$classpath" "$log4j" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" --ignore-formatted
fi
# shellcheck disable=SC2086  # the options are words
exec java ${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true ${KAFKA_JVM_OPTS:-} \
    "$log4j" -cp "$classpath" kafka.Kafka "$props"
