//! The committed schema is what the model generates, and it is a valid draft 2020-12
//! schema: together these keep `schemas/playbook.schema.json`, the model and the
//! validator in step.

use std::path::PathBuf;

use serde_json::Value;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/playbook.schema.json")
}

#[test]
fn committed_schema_matches_the_model() {
    let committed =
        std::fs::read_to_string(committed_path()).expect("schemas/playbook.schema.json exists");
    let generated = runner::playbook::schema::schema_text();
    if committed != generated {
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(committed_path(), &generated).expect("write schema");
            return;
        }
        panic!(
            "schemas/playbook.schema.json is stale: the model changed. Regenerate it with\n  \
             UPDATE_SCHEMA=1 cargo test -p runner --test schema\nor\n  cargo run -q -- schema > schemas/playbook.schema.json"
        );
    }
}

#[test]
fn schema_is_valid_draft_2020_12() {
    let schema: Value = serde_json::from_str(&runner::playbook::schema::schema_text()).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(
        jsonschema::meta::is_valid(&schema),
        "the schema does not satisfy its meta-schema"
    );
}

#[test]
fn schema_rejects_unknown_keys_everywhere() {
    // Every object of the format refuses unknown keys, so a typo is never ignored.
    let schema = runner::playbook::schema::schema();
    let defs = schema["$defs"].as_object().unwrap();
    let mut objects = 0;
    for (name, def) in defs {
        if def.get("type") == Some(&Value::from("object")) {
            objects += 1;
            assert_eq!(
                def.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{name} accepts unknown keys"
            );
        }
    }
    assert!(
        objects >= 10,
        "expected the format's objects in $defs, found {objects}"
    );
    assert_eq!(schema["additionalProperties"], Value::Bool(false));
}

#[test]
fn runner_schema_prints_the_committed_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(committed_path()).unwrap()
    );
}
