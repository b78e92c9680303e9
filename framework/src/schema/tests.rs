use super::*;
use crate::codec::{Codec, Serde};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const ORDER_V1: &str = r#"{"type":"record","name":"Order","fields":[
    {"name":"id","type":"string"},{"name":"cents","type":"long"}]}"#;
const ORDER_V2: &str = r#"{"type":"record","name":"Order","fields":[
    {"name":"id","type":"string"},{"name":"cents","type":"long"},
    {"name":"currency","type":"string","default":"EUR"}]}"#;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct OrderV1 {
    id: String,
    cents: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct OrderV2 {
    id: String,
    cents: i64,
    currency: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Reading {
    #[prost(string, tag = "1")]
    sensor: String,
    #[prost(double, tag = "2")]
    celsius: f64,
}
const READING: &str =
    "syntax = \"proto3\";\nmessage Reading { string sensor = 1; double celsius = 2; }\n";

fn registry() -> Arc<SchemaRegistry> {
    Arc::new(
        SchemaRegistry::fixed()
            .with_schema(7, "orders-value", ORDER_V1)
            .with_schema(8, "orders-value", ORDER_V2)
            .with_schema(42, "readings-value", READING),
    )
}

#[test]
fn avro_writes_the_wire_format_and_reads_it_back() {
    let serde = Serde::avro::<OrderV1>(ORDER_V1, "orders-value", &registry()).unwrap();
    let order = OrderV1 {
        id: "o-1".into(),
        cents: 1250,
    };
    let bytes = serde.encode(&order).unwrap().unwrap().into_owned();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 7], "magic byte and schema id 7");
    // Avro binary: string "o-1" (zigzag length 3 = 6), then long 1250 (zigzag 2500).
    assert_eq!(&bytes[5..9], &[6, b'o', b'-', b'1']);
    assert_eq!(serde.decode(Some(&bytes)).unwrap(), order);
}

#[test]
fn avro_reads_an_older_writer_schema_into_a_newer_reader_schema() {
    let registry = registry();
    let v1 = Serde::avro::<OrderV1>(ORDER_V1, "orders-value", &registry).unwrap();
    let v2 = Serde::avro::<OrderV2>(ORDER_V2, "orders-value", &registry).unwrap();
    let old = v1
        .encode(&OrderV1 {
            id: "o-2".into(),
            cents: 99,
        })
        .unwrap()
        .unwrap()
        .into_owned();
    assert_eq!(
        v2.decode(Some(&old)).unwrap(),
        OrderV2 {
            id: "o-2".into(),
            cents: 99,
            currency: "EUR".into()
        },
        "the field the writer did not have takes its default"
    );
}

#[test]
fn bad_bytes_and_unknown_ids_are_clear_errors() {
    let serde = Serde::avro::<OrderV1>(ORDER_V1, "orders-value", &registry()).unwrap();
    let e = serde.decode(Some(b"{\"id\":1}")).unwrap_err();
    assert!(e.contains("first byte is 123"), "{e}");
    let e = serde.decode(Some(&[0, 0, 0])).unwrap_err();
    assert!(e.contains("too short"), "{e}");
    let e = serde.decode(Some(&[0, 0, 0, 0, 99, 1])).unwrap_err();
    assert!(e.contains("schema id 99 is unknown"), "{e}");
    let e = serde.decode(None).unwrap_err();
    assert!(e.contains("null"), "{e}");
    let unregistered = Serde::avro::<OrderV1>(ORDER_V1, "other-value", &registry()).unwrap();
    let e = unregistered
        .encode(&OrderV1 {
            id: "x".into(),
            cents: 1,
        })
        .unwrap_err();
    assert!(e.contains("other-value"), "{e}");
    assert!(Serde::avro::<OrderV1>("{not a schema", "s", &registry()).is_err());
}

#[test]
fn protobuf_writes_the_wire_format_with_message_indexes_and_reads_it_back() {
    let serde = Serde::protobuf::<Reading>(READING, "readings-value", &registry());
    let r = Reading {
        sensor: "s-1".into(),
        celsius: 21.5,
    };
    let bytes = serde.encode(&r).unwrap().unwrap().into_owned();
    assert_eq!(
        &bytes[..6],
        &[0, 0, 0, 0, 42, 0],
        "magic, id 42, indexes [0]"
    );
    assert_eq!(serde.decode(Some(&bytes)).unwrap(), r);
    // Indexes written in full ([1, 0]: count 2 = zigzag 4, then 2 and 0) are skipped too.
    let mut long = vec![0, 0, 0, 0, 42, 4, 2, 0];
    long.extend_from_slice(&bytes[6..]);
    assert_eq!(serde.decode(Some(&long)).unwrap(), r);
}

/// A stand-in for a registry's two endpoints, on a local port: answers `POST
/// /subjects/{s}/versions` with id 5 and `GET /schemas/ids/5` with the schema registered;
/// records each request line and its `Authorization` header.
fn fake_registry() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut stored = String::new();
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let (mut length, mut auth) = (0, String::new());
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if lower.starts_with("authorization:") {
                    auth = h.trim()["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            log.lock().unwrap().push(format!("{} {auth}", line.trim()));
            let answer = if line.starts_with("POST /subjects/orders-value/versions") {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["schemaType"], "AVRO");
                stored = v["schema"].as_str().unwrap().to_string();
                serde_json::json!({ "id": 5 })
            } else if line.starts_with("GET /schemas/ids/5 ") {
                serde_json::json!({ "schema": stored })
            } else {
                serde_json::json!({ "error_code": 40403, "message": "Schema not found" })
            };
            let status = if answer.get("error_code").is_some() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let text = answer.to_string();
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            )
            .unwrap();
        }
    });
    (url, seen)
}

#[test]
fn a_registry_is_asked_once_per_schema_with_basic_auth() {
    let (url, seen) = fake_registry();
    let writer_side = Arc::new(
        SchemaRegistry::new(&url).with_basic_auth("key", crate::security::Secret::value("s3cret")),
    );
    let reader_side = Arc::new(SchemaRegistry::new(&url));
    let w = Serde::avro::<OrderV1>(ORDER_V1, "orders-value", &writer_side).unwrap();
    let r = Serde::avro::<OrderV1>(ORDER_V1, "orders-value", &reader_side).unwrap();
    for i in 0..3 {
        let order = OrderV1 {
            id: format!("o-{i}"),
            cents: i,
        };
        let bytes = w.encode(&order).unwrap().unwrap().into_owned();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 5]);
        assert_eq!(r.decode(Some(&bytes)).unwrap(), order);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "POST /subjects/orders-value/versions HTTP/1.1 Basic a2V5OnMzY3JldA==",
            "GET /schemas/ids/5 HTTP/1.1 ",
        ],
        "one registration, one fetch, for three records each way"
    );
    let e = r.decode(Some(&[0, 0, 0, 0, 6, 0])).unwrap_err();
    assert!(e.contains("404") && e.contains("Schema not found"), "{e}");
    let gone = Arc::new(SchemaRegistry::new("http://127.0.0.1:9"));
    let e = Serde::avro::<OrderV1>(ORDER_V1, "orders-value", &gone)
        .unwrap()
        .encode(&OrderV1 {
            id: "x".into(),
            cents: 1,
        })
        .unwrap_err();
    assert!(e.contains("unreachable"), "{e}");
}
