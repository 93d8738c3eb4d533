//! Conformance of the management API, driven over HTTP against the real binary on SQLite,
//! PostgreSQL and MySQL: envelopes, error types/codes/statuses, install tasks, two tenants sharing
//! a plugin, upgrade, providers, assets, readmes and debugging keys.

use crate::common;

use std::time::Duration;

use common::{assert_error, assert_ok, dummy_variant, fixture_bytes, Daemon, DaemonOptions, TestDb};
use serde_json::{json, Value};

const BAD_REQUEST: &str = "PluginDaemonBadRequestError";
const INTERNAL: &str = "PluginDaemonInternalServerError";
const NOT_FOUND: &str = "PluginDaemonNotFoundError";

fn m(tenant: &str, rest: &str) -> String {
    format!("/plugin/{tenant}/management{rest}")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

// ---------------------------------------------------------------------------------------------

async fn auth_routing_and_system_routes(db: &TestDb) {
    let d = Daemon::start(db, DaemonOptions::default()).await;
    let unauthorized = r#"{"code":-401,"message":"{\"message\":\"unauthorized\",\"error_type\":\"PluginDaemonUnauthorizedError\",\"args\":null}","data":null}"#;

    // Missing and wrong keys: HTTP 401 with the exact upstream body.
    for key in [None, Some("wrong")] {
        let mut req = d.client.get(d.url(&m("t1", "/list?page=1&page_size=10")));
        if let Some(k) = key {
            req = req.header("X-Api-Key", k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.text().await.unwrap(), unauthorized);
    }
    let r = d.client.post(d.url("/plugin/t1/debugging/key")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Unknown route and wrong method: 404 with a string code.
    for (method, path) in [("GET", "/nope"), ("GET", "/plugin/t1/management/nope/deeper/x"), ("DELETE", "/health/check")] {
        let r = d.client.request(method.parse().unwrap(), d.url(path)).header("X-Api-Key", &d.key).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{method} {path}");
        assert_eq!(r.text().await.unwrap(), r#"{"code":"not_found","message":"route not found"}"#);
    }

    // Health: plain JSON without the key.
    let r = d.client.get(d.url("/health/check")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let health: Value = r.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["platform"], "local");
    for field in ["free", "busy", "total"] {
        assert!(health["pool_status"][field].is_i64(), "{health}");
    }
    assert!(health["active_requests"].is_i64() && health["active_dispatch_requests"].is_i64());

    // Metrics: Prometheus text that counts the requests above.
    let r = d.client.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE http_requests_total counter"), "{text}");
    assert!(text.contains("status=\"401\""), "{text}");

    // Empty lists are arrays/objects, never null.
    let data = assert_ok(&d.get(&m("t1", "/list?page=1&page_size=10")).await);
    assert_eq!(data, json!({"list": [], "total": 0}));
    assert_eq!(assert_ok(&d.get(&m("t1", "/install/tasks?page=1&page_size=10")).await), json!([]));
    assert_eq!(assert_ok(&d.get(&m("t1", "/tools?page=1&page_size=10")).await), json!([]));
    assert_eq!(assert_ok(&d.get(&m("t1", "/models/bindings")).await), json!([]));

    // Debugging key: a UUID v4, stable per tenant, different across tenants.
    let k1 = assert_ok(&d.post_empty("/plugin/t1/debugging/key").await);
    let k1_again = assert_ok(&d.post_empty("/plugin/t1/debugging/key").await);
    let k2 = assert_ok(&d.post_empty("/plugin/t2/debugging/key").await);
    assert_eq!(k1, k1_again);
    assert_ne!(k1, k2);
    let key = k1["key"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(key).unwrap().get_version_num(), 4);
}
on_every_backend!(auth_routing_and_system_routes, auth_routing_and_system_routes);

// ---------------------------------------------------------------------------------------------

async fn error_paths(db: &TestDb) {
    let d = Daemon::start(db, DaemonOptions { env: vec![("MAX_PLUGIN_PACKAGE_SIZE".into(), "3000".into())], ..Default::default() }).await;
    let dummy = fixture_bytes("dummy_plugin.difypkg");
    assert!(dummy.len() < 3000, "the dummy fixture must fit the lowered size limit");

    // Oversized upload: HTTP 200, -400.
    let big = vec![7u8; 4096];
    assert_error(&d.upload_package("t1", &big, None).await, 200, -400, BAD_REQUEST, Some("file size exceeds the maximum limit"));
    // Far beyond the limit (past the hard body cap) the answer is the same.
    let huge = vec![7u8; 3 << 20];
    assert_error(&d.upload_package("t1", &huge, None).await, 200, -400, BAD_REQUEST, Some("file size exceeds the maximum limit"));
    // No file: HTTP 200, -400.
    let form = reqwest::multipart::Form::new().text("verify_signature", "false");
    let r = d
        .client
        .post(d.url(&m("t1", "/install/upload/package")))
        .header("X-Api-Key", &d.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_error(&common::read_json(r).await, 200, -400, BAD_REQUEST, Some("http: no such file"));
    // Not a package.
    assert_error(&d.upload_package("t1", b"not a zip", None).await, 200, -400, BAD_REQUEST, None);

    // Missing required fields: HTTP 400 binding errors.
    let r = d.post(&m("t1", "/install/identifiers"), &json!({"source": "package"})).await;
    assert_error(&r, 400, -400, BAD_REQUEST, None);
    let r = d
        .post(&m("t1", "/install/identifiers"), &json!({"plugin_unique_identifiers": ["a/b:0.0.1@0123456789abcdef0123456789abcdef"]}))
        .await;
    assert_error(
        &r,
        400,
        -400,
        BAD_REQUEST,
        Some("Key: 'InstallPluginFromIdentifiersRequest.Source' Error:Field validation for 'Source' failed on the 'required' tag"),
    );
    assert_error(&d.get(&m("t1", "/list")).await, 400, -400, BAD_REQUEST, None);
    assert_error(&d.get(&m("t1", "/list?page=1&page_size=257")).await, 400, -400, BAD_REQUEST, None);
    assert_error(&d.post(&m("t1", "/uninstall"), &json!({})).await, 400, -400, BAD_REQUEST, None);
    assert_error(&d.get(&m("t1", "/tool?plugin_id=a/b")).await, 400, -400, BAD_REQUEST, None);

    // Bad identifiers.
    assert_error(&d.get(&m("t1", "/fetch/manifest?plugin_unique_identifier=not-an-id")).await, 400, -400, BAD_REQUEST, None);
    let r = d
        .post(&m("t1", "/install/identifiers"), &json!({"plugin_unique_identifiers": ["Bad/ID"], "source": "package", "metas": [{}]}))
        .await;
    assert_error(&r, 400, -400, BAD_REQUEST, None);
    let r = d.post_empty(&m("t1", "/install/tasks/x/delete/not-an-identifier")).await;
    assert_error(&r, 200, -400, BAD_REQUEST, None);

    // Unknown things.
    let unknown = "someone/nothing:1.0.0@0123456789abcdef0123456789abcdef";
    assert_error(
        &d.get(&m("t1", &format!("/fetch/manifest?plugin_unique_identifier={}", enc(unknown)))).await,
        200,
        -400,
        BAD_REQUEST,
        Some("plugin not found"),
    );
    assert_error(
        &d.get(&m("t1", &format!("/decode/from_identifier?plugin_unique_identifier={}", enc(unknown)))).await,
        200,
        -400,
        BAD_REQUEST,
        Some("plugin package not found, please upload it firstly"),
    );
    assert_error(
        &d.get(&m("t1", &format!("/fetch/readme?plugin_unique_identifier={}", enc(unknown)))).await,
        200,
        -404,
        NOT_FOUND,
        Some("no readme content available for this plugin"),
    );
    assert_eq!(assert_ok(&d.get(&m("t1", &format!("/fetch/identifier?plugin_unique_identifier={}", enc(unknown)))).await), json!(false));
    let r = d
        .post(&m("t1", "/install/identifiers"), &json!({"plugin_unique_identifiers": [unknown], "source": "package", "metas": [{}]}))
        .await;
    assert_error(&r, 200, -500, INTERNAL, Some("plugin not found\nfailed to get plugin declaration"));
    let r = d
        .post(&m("t1", "/install/identifiers"), &json!({"plugin_unique_identifiers": [unknown], "source": "package", "metas": []}))
        .await;
    assert_error(&r, 200, -400, BAD_REQUEST, Some("the number of metas must be equal to the number of plugin unique identifiers"));
    assert_error(
        &d.get(&m("t1", "/install/tasks/01234567-0000-7000-8000-000000000000")).await,
        200,
        -500,
        INTERNAL,
        Some("record not found"),
    );
    assert_eq!(assert_ok(&d.post_empty(&m("t1", "/install/tasks/01234567-0000-7000-8000-000000000000/delete")).await), json!(true));
    assert_eq!(assert_ok(&d.post_empty(&m("t1", &format!("/install/tasks/missing/delete/{unknown}"))).await), json!(true));
    assert_eq!(assert_ok(&d.post(&m("t1", "/uninstall"), &json!({"plugin_installation_id": "nope"})).await), json!(true));
    let r = d.post(&m("t1", "/install/upgrade"), &json!({"original_plugin_unique_identifier": unknown, "new_plugin_unique_identifier": "someone/nothing:1.0.1@0123456789abcdef0123456789abcdef", "source": "package", "meta": {}})).await;
    assert_error(&r, 200, -404, NOT_FOUND, Some("plugin installation not found for this tenant"));
    let r = d
        .post(
            &m("t1", "/install/upgrade"),
            &json!({"original_plugin_unique_identifier": unknown, "new_plugin_unique_identifier": unknown, "source": "package"}),
        )
        .await;
    assert_error(&r, 200, -400, BAD_REQUEST, Some("original and new plugin unique identifier are the same"));
    let r = d.post(&m("t1", "/install/upgrade"), &json!({"original_plugin_unique_identifier": unknown, "new_plugin_unique_identifier": "someone/other:1.0.1@0123456789abcdef0123456789abcdef", "source": "package"})).await;
    assert_error(&r, 200, -400, BAD_REQUEST, Some("original and new plugin id are different"));
    assert_error(&d.get(&m("t1", "/tool?plugin_id=a/b&provider=x")).await, 200, -404, "PluginNotFoundError", Some("plugin not found"));
    assert_error(
        &d.get(&m("t1", "/agent_strategy?plugin_id=a/b&provider=x")).await,
        200,
        -404,
        "PluginNotFoundError",
        Some("plugin not found"),
    );
    assert_error(&d.get(&m("t1", "/trigger?plugin_id=a/b&provider=x")).await, 200, -404, "PluginNotFoundError", Some("plugin not found"));
    assert_error(&d.get(&m("t1", "/datasource?plugin_id=a/b&provider=x")).await, 200, -500, INTERNAL, Some("record not found"));
    assert_error(&d.get(&m("t1", "/installation/ids?category=spaceship")).await, 200, -400, BAD_REQUEST, None);
    assert_error(&d.get(&m("t1", "/spaceship/list?page=1&page_size=10")).await, 400, -400, BAD_REQUEST, None);
    assert_error(&d.get(&m("t1", "/tool/list?page=1&page_size=10&tags=notatag")).await, 400, -400, BAD_REQUEST, None);
    let r = d
        .get(&format!("/plugin/t1/extract-asset/?plugin_unique_identifier={}&file_path=manifest.yaml", enc(unknown)))
        .await;
    assert_error(&r, 500, -500, INTERNAL, None);
    // A missing asset is an empty 200 body.
    let r = d.client.get(d.url("/plugin/t1/asset/0000.svg")).header("X-Api-Key", &d.key).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.unwrap().is_empty());

    // Unsigned package with verify_signature=true: the exact upstream message.
    let r = d.upload_package("t1", &dummy, Some(true)).await;
    assert_error(
        &r,
        200,
        -400,
        BAD_REQUEST,
        Some("plugin verification has been enabled, and the plugin you want to install has a bad signature"),
    );
    // Without the flag the same package is accepted.
    assert_ok(&d.upload_package("t1", &dummy, Some(false)).await);
}
on_every_backend!(error_paths, error_paths);

// ---------------------------------------------------------------------------------------------

async fn unsigned_packages_and_signature_rules(db: &TestDb) {
    let keys = common::fixture("keys/test_key_pair_1.public.pem");
    let d = Daemon::start(
        db,
        DaemonOptions {
            env: vec![
                ("FORCE_VERIFYING_SIGNATURE".into(), "true".into()),
                ("THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED".into(), "true".into()),
                ("THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS".into(), keys.display().to_string()),
            ],
            ..Default::default()
        },
    )
    .await;
    let bad = "plugin verification has been enabled, and the plugin you want to install has a bad signature";
    let dummy = fixture_bytes("dummy_plugin.difypkg");
    assert_error(&d.upload_package("t1", &dummy, None).await, 200, -400, BAD_REQUEST, Some(bad));
    assert_error(&d.upload_package("t1", &dummy, Some(false)).await, 200, -400, BAD_REQUEST, Some(bad));

    // Signed by a trusted third-party key.
    let private = std::fs::read_to_string(common::fixture("keys/test_key_pair_1.private.pem")).unwrap();
    let key = dify_package::PrivateKey::from_pem(&private).unwrap();
    let signed = dify_package::signature::sign(&dummy, &key, Some("partner")).unwrap();
    let data = assert_ok(&d.upload_package("t1", &signed, Some(true)).await);
    assert_eq!(data["verification"], json!({"authorized_category": "partner"}));
    assert_eq!(data["manifest"]["verified"], json!(true));

    // Signed by an untrusted key.
    let other = std::fs::read_to_string(common::fixture("keys/test_key_pair_2.private.pem")).unwrap();
    let other = dify_package::PrivateKey::from_pem(&other).unwrap();
    let untrusted = dify_package::signature::sign(&dummy, &other, None).unwrap();
    assert_error(&d.upload_package("t1", &untrusted, None).await, 200, -400, BAD_REQUEST, Some(bad));

    // The official langgenius package verifies with the embedded key.
    let agent = fixture_bytes("langgenius-agent_0.0.14.difypkg");
    let data = assert_ok(&d.upload_package("t1", &agent, Some(true)).await);
    assert_eq!(data["verification"]["authorized_category"], "langgenius");
    drop(d);

    // Verification off: an unsigned single package claiming langgenius authorship is accepted, as
    // upstream does (the authorship rule applies to bundles only).
    let d = Daemon::start(db, DaemonOptions::default()).await;
    let openai = fixture_bytes("openai.difypkg");
    let data = assert_ok(&d.upload_package("t1", &openai, None).await);
    assert_eq!(data["verification"], Value::Null);
    let data = assert_ok(&d.upload_package("t1", &dummy, None).await);
    assert_eq!(data["verification"], Value::Null);
}
on_every_backend!(unsigned_packages_and_signature_rules, unsigned_packages_and_signature_rules);

// ---------------------------------------------------------------------------------------------

async fn install_lifecycle_two_tenants(db: &TestDb) {
    let d = Daemon::start(db, DaemonOptions::default()).await;
    let pkg = dummy_variant("0.0.1", "test", &[("README.md", "# English readme"), ("readme/README_zh_Hans.md", "# 中文")]);
    let upload = assert_ok(&d.upload_package("tenant-a", &pkg, Some(false)).await);
    let uid = upload["unique_identifier"].as_str().unwrap().to_string();
    assert!(uid.starts_with("test/test:0.0.1@"), "{uid}");
    assert_eq!(upload["verification"], Value::Null);
    let manifest = &upload["manifest"];
    assert_eq!(manifest["name"], "test");
    assert_eq!(manifest["verified"], false);
    let icon = manifest["icon"].as_str().unwrap().to_string();
    assert!(icon.ends_with(".svg") && icon.len() == 68, "icon rewritten to an asset id: {icon}");
    // Upload is idempotent.
    let again = assert_ok(&d.upload_package("tenant-b", &pkg, None).await);
    assert_eq!(again["unique_identifier"], upload["unique_identifier"]);

    // Manifest, decode, readme before installation.
    let q = format!("plugin_unique_identifier={}", enc(&uid));
    assert_eq!(&assert_ok(&d.get(&m("tenant-a", &format!("/fetch/manifest?{q}"))).await), manifest);
    let decoded = assert_ok(&d.get(&m("tenant-a", &format!("/decode/from_identifier?{q}"))).await);
    assert_eq!(decoded["unique_identifier"], uid.as_str());
    assert_eq!(&decoded["manifest"], manifest);
    // Older Dify versions send this GET with a JSON body instead of a query.
    let r = d
        .client
        .get(d.url(&m("tenant-a", "/decode/from_identifier")))
        .header("X-Api-Key", &d.key)
        .json(&json!({"plugin_unique_identifier": uid}))
        .send()
        .await
        .unwrap();
    assert_eq!(assert_ok(&common::read_json(r).await)["unique_identifier"], uid.as_str());
    let readme = assert_ok(&d.get(&m("tenant-a", &format!("/fetch/readme?{q}&language=zh_Hans"))).await);
    assert_eq!(readme, json!({"content": "# 中文", "language": "zh_Hans"}));
    let readme = assert_ok(&d.get(&m("tenant-a", &format!("/fetch/readme?{q}&language=ja_JP"))).await);
    assert_eq!(readme, json!({"content": "# English readme", "language": "en_US"}));
    assert_eq!(assert_ok(&d.get(&m("tenant-a", &format!("/fetch/identifier?{q}"))).await), json!(false));

    // Assets: the rewritten icon and a raw file from the package.
    let r = d
        .client
        .get(d.url(&format!("/plugin/tenant-a/asset/{icon}")))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert!(String::from_utf8_lossy(&r.bytes().await.unwrap()).contains("<svg"));
    let r = d
        .client
        .get(d.url(&format!("/plugin/tenant-a/extract-asset/?{q}&file_path=provider/test.yaml")))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(String::from_utf8_lossy(&r.bytes().await.unwrap()).contains("identity"));

    // Install for tenant A: task success, entry message `installed`.
    let task = d.install_identifier("tenant-a", &uid).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["total_plugins"], 1);
    assert_eq!(task["completed_plugins"], 1);
    assert_eq!(task["tenant_id"], "tenant-a");
    let entry = &task["plugins"][0];
    assert_eq!(entry["plugin_unique_identifier"], uid.as_str());
    assert_eq!(entry["plugin_id"], "test/test");
    assert_eq!(entry["status"], "success");
    assert_eq!(entry["message"], "installed");
    assert_eq!(entry["source"], "package");
    assert_eq!(entry["icon"], icon.as_str());
    assert_eq!(entry["labels"]["en_US"], "test");
    let tasks = assert_ok(&d.get(&m("tenant-a", "/install/tasks?page=1&page_size=10")).await);
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    assert_eq!(tasks[0]["id"], task["id"]);
    // Installing again: everything is already installed, no task.
    let again = assert_ok(
        &d.post(&m("tenant-a", "/install/identifiers"), &json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}))
            .await,
    );
    assert_eq!(again, json!({"all_installed": true, "task_id": ""}));

    // List for tenant A.
    let list = d.list("tenant-a").await;
    assert_eq!(list.len(), 1);
    let entity = &list[0];
    assert_eq!(entity["plugin_id"], "test/test");
    assert_eq!(entity["name"], "test");
    assert_eq!(entity["version"], "0.0.1");
    assert_eq!(entity["tenant_id"], "tenant-a");
    assert_eq!(entity["runtime_type"], "local");
    assert_eq!(entity["source"], "package");
    assert_eq!(entity["id"], entity["installation_id"]);
    assert_eq!(entity["checksum"], uid.split('@').nth(1).unwrap());
    assert_eq!(entity["declaration"]["name"], "test");
    assert_eq!(entity["endpoints_setups"], 0);
    let keys: Vec<&String> = entity.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        vec![
            "id",
            "name",
            "plugin_id",
            "tenant_id",
            "plugin_unique_identifier",
            "endpoints_active",
            "endpoints_setups",
            "installation_id",
            "declaration",
            "runtime_type",
            "version",
            "created_at",
            "updated_at",
            "source",
            "checksum",
            "meta"
        ]
    );
    assert_eq!(assert_ok(&d.get(&m("tenant-a", "/list?page=1&page_size=10")).await)["total"], 1);
    assert_eq!(assert_ok(&d.get(&m("tenant-a", &format!("/fetch/identifier?{q}"))).await), json!(true));

    // Provider rows: tools list, tool lookup, existence check, category views.
    let tools = assert_ok(&d.get(&m("tenant-a", "/tools?page=1&page_size=256")).await);
    assert_eq!(tools.as_array().unwrap().len(), 1);
    let provider = tools[0]["provider"].as_str().unwrap().to_string();
    assert_eq!(tools[0]["plugin_id"], "test/test");
    assert!(tools[0]["declaration"]["identity"].is_object(), "{tools}");
    let tool = assert_ok(&d.get(&m("tenant-a", &format!("/tool?plugin_id=test/test&provider={provider}"))).await);
    assert_eq!(tool["provider"], provider.as_str());
    assert_error(&d.get(&m("tenant-a", "/tool?plugin_id=test/test&provider=other")).await, 200, -404, "PluginNotFoundError", None);
    let exist = assert_ok(
        &d.post(
            &m("tenant-a", "/tools/check_existence"),
            &json!({"provider_ids": [
        {"plugin_id": "test/test", "provider_name": provider}, {"plugin_id": "test/test", "provider_name": "nope"},
        {"plugin_id": "x/y", "provider_name": provider}]}),
        )
        .await,
    );
    assert_eq!(exist, json!([true, false, false]));
    assert_eq!(assert_ok(&d.get(&m("tenant-a", "/installation/ids?category=tool")).await), json!({"plugin_ids": ["test/test"]}));
    assert_eq!(assert_ok(&d.get(&m("tenant-a", "/installation/ids?category=model")).await), json!({"plugin_ids": []}));
    let by_cat = assert_ok(&d.get(&m("tenant-a", "/tool/list?page=1&page_size=10&query=TES&language=en_US")).await);
    assert_eq!(by_cat["list"].as_array().unwrap().len(), 1);
    assert_eq!(by_cat["has_more"], false);
    let by_cat = assert_ok(&d.get(&m("tenant-a", "/tool/list?page=1&page_size=10&query=nomatch")).await);
    assert_eq!(by_cat["list"], json!([]));
    let by_cat = assert_ok(&d.get(&m("tenant-a", "/model/list?page=1&page_size=10")).await);
    assert_eq!(by_cat["list"], json!([]));
    let batch = assert_ok(&d.post(&m("tenant-a", "/installation/fetch/batch"), &json!({"plugin_ids": ["test/test", "x/y"]})).await);
    assert_eq!(batch.as_array().unwrap().len(), 1);
    assert_eq!(batch[0]["version"], "0.0.1");
    assert_eq!(batch[0]["plugin_unique_identifier"], uid.as_str());
    assert_eq!(assert_ok(&d.post(&m("tenant-a", "/installation/fetch/batch"), &json!({"plugin_ids": []})).await), json!([]));
    let other_version = "test/test:0.0.9@0123456789abcdef0123456789abcdef";
    let missing = assert_ok(
        &d.post(
            &m("tenant-a", "/installation/missing"),
            &json!({"plugin_unique_identifiers": [uid, other_version, "a/b:1.0.0@0123456789abcdef0123456789abcdef"]}),
        )
        .await,
    );
    assert_eq!(
        missing,
        json!([
            {"plugin_unique_identifier": other_version, "current_identifier": uid},
            {"plugin_unique_identifier": "a/b:1.0.0@0123456789abcdef0123456789abcdef", "current_identifier": ""}
        ])
    );

    // Tenant B installs the same version: one shared plugin row.
    let task_b = d.install_identifier("tenant-b", &uid).await;
    assert_eq!(task_b["status"], "success");
    let list_b = d.list("tenant-b").await;
    assert_eq!(list_b.len(), 1);
    assert_ne!(list_b[0]["id"], entity["id"]);

    // A uninstalls: B still has it, the version is still installed somewhere.
    assert_eq!(assert_ok(&d.post(&m("tenant-a", "/uninstall"), &json!({"plugin_installation_id": entity["id"]})).await), json!(true));
    assert!(d.list("tenant-a").await.is_empty());
    assert_eq!(assert_ok(&d.get(&m("tenant-a", "/tools?page=1&page_size=10")).await), json!([]));
    assert_eq!(d.list("tenant-b").await.len(), 1);
    assert_eq!(assert_ok(&d.get(&m("tenant-a", &format!("/fetch/identifier?{q}"))).await), json!(true));
    // Uninstalling B's installation as tenant A changes nothing.
    assert_eq!(assert_ok(&d.post(&m("tenant-a", "/uninstall"), &json!({"plugin_installation_id": list_b[0]["id"]})).await), json!(true));
    assert_eq!(d.list("tenant-b").await.len(), 1);
    // B uninstalls: the version is gone, the package stays available.
    assert_eq!(assert_ok(&d.post(&m("tenant-b", "/uninstall"), &json!({"plugin_installation_id": list_b[0]["id"]})).await), json!(true));
    assert!(d.list("tenant-b").await.is_empty());
    assert_eq!(assert_ok(&d.get(&m("tenant-b", &format!("/fetch/identifier?{q}"))).await), json!(false));
    assert_eq!(assert_ok(&d.get(&m("tenant-b", &format!("/decode/from_identifier?{q}"))).await)["unique_identifier"], uid.as_str());

    // Task deletion.
    assert_eq!(
        assert_ok(&d.post_empty(&m("tenant-a", &format!("/install/tasks/{}/delete", task["id"].as_str().unwrap()))).await),
        json!(true)
    );
    assert_error(
        &d.get(&m("tenant-a", &format!("/install/tasks/{}", task["id"].as_str().unwrap()))).await,
        200,
        -500,
        INTERNAL,
        Some("record not found"),
    );
    assert_eq!(assert_ok(&d.post_empty(&m("tenant-b", "/install/tasks/delete_all")).await), json!(true));
    assert_eq!(assert_ok(&d.get(&m("tenant-b", "/install/tasks?page=1&page_size=10")).await), json!([]));
}
on_every_backend!(install_lifecycle_two_tenants, install_lifecycle_two_tenants);

// ---------------------------------------------------------------------------------------------

async fn upgrade_between_versions(db: &TestDb) {
    let d = Daemon::start(db, DaemonOptions::default()).await;
    let v1 = dummy_variant("0.0.1", "upg", &[]);
    let v2 = dummy_variant("0.0.2", "upg", &[]);
    let (uid1, task) = d.install_package("t1", &v1).await;
    assert_eq!(task["status"], "success");
    let uid2 = assert_ok(&d.upload_package("t1", &v2, None).await)["unique_identifier"].as_str().unwrap().to_string();
    assert_ne!(uid1, uid2);

    // No tenant runs v2 yet: the upgrade goes through a task.
    let r = assert_ok(&d.post(&m("t1", "/install/upgrade"), &json!({"original_plugin_unique_identifier": uid1, "new_plugin_unique_identifier": uid2, "source": "package", "meta": {"k": "v"}})).await);
    assert_eq!(r["all_installed"], false);
    let task = d.wait_task("t1", r["task_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["plugins"][0]["message"], "upgraded");
    assert_eq!(task["plugins"][0]["labels"], json!({"en_US": "", "zh_Hans": "", "ja_JP": "", "pt_BR": ""}));
    let list = d.list("t1").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["plugin_unique_identifier"], uid2.as_str());
    assert_eq!(list[0]["version"], "0.0.2");
    assert_eq!(list[0]["meta"], json!({"k": "v"}));
    let q1 = format!("plugin_unique_identifier={}", enc(&uid1));
    assert_eq!(assert_ok(&d.get(&m("t1", &format!("/fetch/identifier?{q1}"))).await), json!(false));
    let tools = assert_ok(&d.get(&m("t1", "/tools?page=1&page_size=10")).await);
    assert_eq!(tools[0]["plugin_unique_identifier"], uid2.as_str());

    // Upgrading from a version the tenant no longer has.
    let r = d
        .post(
            &m("t1", "/install/upgrade"),
            &json!({"original_plugin_unique_identifier": uid1, "new_plugin_unique_identifier": uid2, "source": "package"}),
        )
        .await;
    assert_error(&r, 200, -404, NOT_FOUND, Some("plugin installation not found for this tenant"));

    // Tenant 2 on v1 upgrades to v2, which tenant 1 already runs: synchronous swap.
    let task = d.install_identifier("t2", &uid1).await;
    assert_eq!(task["status"], "success");
    let r = assert_ok(
        &d.post(
            &m("t2", "/install/upgrade"),
            &json!({"original_plugin_unique_identifier": uid1, "new_plugin_unique_identifier": uid2, "source": "package"}),
        )
        .await,
    );
    assert_eq!(r, json!({"all_installed": true, "task_id": ""}));
    assert_eq!(d.list("t2").await[0]["plugin_unique_identifier"], uid2.as_str());
    assert_eq!(assert_ok(&d.get(&m("t2", &format!("/fetch/identifier?{q1}"))).await), json!(false));

    // A deleted entry of a finished task removes the task.
    let task_id = task["id"].as_str().unwrap();
    assert_eq!(assert_ok(&d.post_empty(&m("t2", &format!("/install/tasks/{task_id}/delete/{uid1}"))).await), json!(true));
    assert_error(&d.get(&m("t2", &format!("/install/tasks/{task_id}"))).await, 200, -500, INTERNAL, Some("record not found"));
}
on_every_backend!(upgrade_between_versions, upgrade_between_versions);

// ---------------------------------------------------------------------------------------------

async fn providers_of_models_and_agent_strategies(db: &TestDb) {
    let d = Daemon::start(
        db,
        DaemonOptions { env: vec![("ENFORCE_LANGGENIUS_PLUGIN_SIGNATURES".into(), "false".into())], ..Default::default() },
    )
    .await;
    let (openai, task) = d.install_package("t1", &fixture_bytes("openai.difypkg")).await;
    assert_eq!(task["status"], "success", "{task}");
    let (agent, task) = d.install_package("t1", &fixture_bytes("langgenius-agent_0.0.14.difypkg")).await;
    assert_eq!(task["status"], "success", "{task}");

    let models = assert_ok(&d.get(&m("t1", "/models?page=1&page_size=256")).await);
    assert_eq!(models.as_array().unwrap().len(), 1);
    assert_eq!(models[0]["provider"], "openai");
    assert_eq!(models[0]["plugin_id"], "langgenius/openai");
    assert_eq!(models[0]["plugin_unique_identifier"], openai.as_str());
    assert_eq!(models[0]["declaration"]["provider"], "openai");
    // I18n icons of the model provider point at stored assets.
    let icon = models[0]["declaration"]["icon_small"]["en_US"].as_str().unwrap().to_string();
    assert!(icon.ends_with(".svg") && icon.len() == 68, "{icon}");
    let r = d.client.get(d.url(&format!("/plugin/t1/asset/{icon}"))).header("X-Api-Key", &d.key).send().await.unwrap();
    assert!(String::from_utf8_lossy(&r.bytes().await.unwrap()).contains("<svg"));
    let bindings = assert_ok(&d.get(&m("t1", "/models/bindings")).await);
    assert_eq!(bindings[0]["provider"], "openai");
    assert_eq!(bindings[0]["runtime_type"], "local");
    assert_eq!(bindings[0]["version"], "0.0.19");

    let strategies = assert_ok(&d.get(&m("t1", "/agent_strategies?page=1&page_size=256")).await);
    assert_eq!(strategies.as_array().unwrap().len(), 1);
    let provider = strategies[0]["provider"].as_str().unwrap().to_string();
    assert_eq!(strategies[0]["plugin_unique_identifier"], agent.as_str());
    assert!(strategies[0]["meta"]["version"].is_string(), "{strategies}");
    let one = assert_ok(&d.get(&m("t1", &format!("/agent_strategy?plugin_id=langgenius/agent&provider={provider}"))).await);
    assert_eq!(one["provider"], provider.as_str());

    assert_eq!(assert_ok(&d.get(&m("t1", "/installation/ids?category=model")).await), json!({"plugin_ids": ["langgenius/openai"]}));
    assert_eq!(assert_ok(&d.get(&m("t1", "/installation/ids?category=agent-strategy")).await), json!({"plugin_ids": ["langgenius/agent"]}));
    let page = assert_ok(&d.get(&m("t1", "/list?page=1&page_size=1")).await);
    assert_eq!(page["total"], 2);
    assert_eq!(page["list"].as_array().unwrap().len(), 1);
    // Newest first.
    assert_eq!(page["list"][0]["plugin_id"], "langgenius/agent");
    let tagged = assert_ok(&d.get(&m("t1", "/agent-strategy/list?page=1&page_size=10&tags=agent")).await);
    assert_eq!(tagged["list"].as_array().unwrap().len(), 1);
    let tagged = assert_ok(&d.get(&m("t1", "/agent-strategy/list?page=1&page_size=10&tags=search")).await);
    assert_eq!(tagged["list"], json!([]));
    // The agent package's readme is extracted lazily.
    let readme = assert_ok(&d.get(&m("t1", &format!("/fetch/readme?plugin_unique_identifier={}", enc(&agent)))).await);
    assert_eq!(readme["language"], "en_US");
    assert!(!readme["content"].as_str().unwrap().is_empty());
}
on_every_backend!(providers_of_models_and_agent_strategies, providers_of_models_and_agent_strategies);

// ---------------------------------------------------------------------------------------------

async fn bundle_upload(db: &TestDb) {
    let d = Daemon::start(db, DaemonOptions::default()).await;
    let pkg = dummy_variant("0.0.3", "bundled", &[]);
    let manifest = "name: my_bundle\nlabels: {en_US: b}\ndescription: {en_US: b}\nicon: icon.svg\nversion: 0.0.1\nauthor: acme\ntype: bundle\ndependencies:\n  - type: marketplace\n    value: {marketplace_pattern: \"langgenius/openai:0.0.19\"}\n  - type: github\n    value: {repo_pattern: \"acme/my-plugin:1.0.0/my-plugin.difypkg\"}\n  - type: package\n    value: {path: abc123}\ntags: []\n";
    let bundle = dify_package::write::package_files([("manifest.yaml", manifest.as_bytes()), ("_assets/abc123", pkg.as_slice())]).unwrap();
    let data = assert_ok(&d.upload_bundle("t1", &bundle, None).await);
    assert_eq!(data[0], json!({"type": "marketplace", "value": {"organization": "langgenius", "plugin": "openai", "version": "0.0.19"}}));
    assert_eq!(data[1]["type"], "github");
    assert_eq!(data[1]["value"]["repo"], "acme/my-plugin");
    assert_eq!(data[1]["value"]["release"], "1.0.0");
    assert_eq!(data[2]["type"], "package");
    let uid = data[2]["value"]["unique_identifier"].as_str().unwrap();
    assert!(uid.starts_with("test/bundled:0.0.3@"));
    // The bundle is kept in blob storage by content hash.
    let bundle_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bundle))
    };
    assert!(d.workdir.join(format!("storage/bundles/{bundle_hash}.difybndl")).is_file());
    // The embedded package was persisted: it can be installed.
    assert_eq!(d.install_identifier("t1", uid).await["status"], "success");
    assert_error(&d.upload_bundle("t1", b"junk", None).await, 200, -400, BAD_REQUEST, None);

    // A bundle with an unsigned package claiming langgenius authorship is refused as a whole:
    // the valid package next to it is not stored either.
    let second = dummy_variant("0.0.4", "bundled", &[]);
    let manifest = "name: b2\nlabels: {en_US: b}\ndescription: {en_US: b}\nicon: icon.svg\nversion: 0.0.1\nauthor: acme\ntype: bundle\ndependencies:\n  - type: package\n    value: {path: good}\n  - type: package\n    value: {path: bad}\ntags: []\n";
    let openai = fixture_bytes("openai.difypkg");
    let bundle = dify_package::write::package_files([
        ("manifest.yaml", manifest.as_bytes()),
        ("_assets/good", second.as_slice()),
        ("_assets/bad", openai.as_slice()),
    ])
    .unwrap();
    assert_error(&d.upload_bundle("t1", &bundle, None).await, 200, -400, BAD_REQUEST, None);
    let uid = dify_package::Package::from_bytes(second.clone(), &Default::default()).unwrap().unique_identifier().unwrap();
    let q = format!("plugin_unique_identifier={}", enc(uid.as_str()));
    assert_error(&d.get(&m("t1", &format!("/fetch/manifest?{q}"))).await, 200, -400, BAD_REQUEST, Some("plugin not found"));
    assert_eq!(assert_ok(&d.upload_package("t1", &second, None).await)["unique_identifier"], uid.as_str());
    assert_ok(&d.get(&m("t1", &format!("/fetch/manifest?{q}"))).await);
}

/// Switches: no `/metrics` without Prometheus, no `debugging/key` without remote installing.
#[tokio::test]
async fn disabled_features_have_no_routes() {
    let db = TestDb::create(common::Backend::Sqlite).await.unwrap();
    let d = Daemon::start(
        &db,
        DaemonOptions {
            env: vec![("PROMETHEUS_ENABLED".into(), "false".into()), ("PLUGIN_REMOTE_INSTALLING_ENABLED".into(), "false".into())],
            ..Default::default()
        },
    )
    .await;
    let r = d.client.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = d.post_empty("/plugin/t1/debugging/key").await;
    assert_eq!(r.0, 404);
    assert_eq!(r.1, json!({"code": "not_found", "message": "route not found"}));
}
on_every_backend!(bundle_upload, bundle_upload);

// ---------------------------------------------------------------------------------------------

/// With the runtime's preparation step enabled, a package the runtime cannot prepare fails its
/// task with the runtime's own message and leaves nothing installed.
async fn runtime_preparation_failure_fails_the_task(db: &TestDb) {
    let d =
        Daemon::start(db, DaemonOptions { env: vec![("DIFY_TEST_SKIP_RUNTIME_PREPARATION".into(), "false".into())], ..Default::default() })
            .await;
    // A package without pyproject.toml or requirements.txt cannot get a Python environment.
    let pkg = common::repackage(&fixture_bytes("dummy_plugin.difypkg"), &[("requirements.txt", None)]);
    let (uid, task) = d.install_package("t1", &pkg).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["plugins"][0]["status"], "failed");
    assert_ne!(task["plugins"][0]["message"], "");
    assert_ne!(task["plugins"][0]["message"], "starting");
    assert!(d.list("t1").await.is_empty());
    let q = format!("plugin_unique_identifier={}", enc(&uid));
    assert_eq!(assert_ok(&d.get(&m("t1", &format!("/fetch/identifier?{q}"))).await), json!(false));
    common::assert_consistent_state(db, &d.workdir).await;
}
on_every_backend!(runtime_preparation_failure_fails_the_task, runtime_preparation_failure_fails_the_task);

// ---------------------------------------------------------------------------------------------

/// The dummy fixture turned into a plugin declaring one provider of `kind` (`datasources` or
/// `triggers`) from `provider_yaml`.
fn provider_plugin(name: &str, kind: &str, provider_yaml: &str) -> Vec<u8> {
    let manifest = format!(
        "version: 0.0.1\ntype: plugin\nauthor: test\nname: {name}\nlabel:\n  en_US: {name}\ndescription:\n  en_US: {name}\n\
         icon: icon.svg\nresource:\n  memory: 268435456\n  permission: {{}}\nplugins:\n  {kind}:\n    - provider/p.yaml\n\
         meta:\n  version: 0.0.1\n  arch:\n    - amd64\n  runner:\n    language: python\n    version: \"3.12\"\n    entrypoint: main\n\
         created_at: 2025-03-30T14:38:08.927240378Z\n"
    );
    common::repackage(
        &fixture_bytes("dummy_plugin.difypkg"),
        &[("manifest.yaml", Some(manifest.as_bytes())), ("provider/p.yaml", Some(provider_yaml.as_bytes()))],
    )
}

async fn datasource_and_trigger_providers(db: &TestDb) {
    let d = Daemon::start(db, DaemonOptions::default()).await;
    let datasource =
        "identity:\n  author: test\n  name: crawler\n  label:\n    en_US: Crawler\n  description:\n    en_US: d\n  icon: icon.svg\n\
                      provider_type: website_crawl\ncredentials_schema: []\ndatasources: []\n";
    let trigger = "identity:\n  author: test\n  name: ticker\n  label:\n    en_US: Ticker\n  description:\n    en_US: d\n  icon: icon.svg\nevents: []\n";
    let (ds_uid, task) = d.install_package("t1", &provider_plugin("crawl", "datasources", datasource)).await;
    assert_eq!(task["status"], "success", "{task}");
    let (tr_uid, task) = d.install_package("t1", &provider_plugin("tick", "triggers", trigger)).await;
    assert_eq!(task["status"], "success", "{task}");

    let list = assert_ok(&d.get(&m("t1", "/datasources?page=1&page_size=10")).await);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["provider"], "crawler");
    assert_eq!(list[0]["plugin_unique_identifier"], ds_uid.as_str());
    assert_eq!(list[0]["declaration"]["identity"]["name"], "crawler");
    let one = assert_ok(&d.get(&m("t1", "/datasource?plugin_id=test/crawl&provider=crawler")).await);
    assert_eq!(one["plugin_id"], "test/crawl");
    // A provider-name mismatch is PluginNotFoundError, unlike a missing row.
    assert_error(
        &d.get(&m("t1", "/datasource?plugin_id=test/crawl&provider=other")).await,
        200,
        -404,
        "PluginNotFoundError",
        Some("plugin not found"),
    );

    let list = assert_ok(&d.get(&m("t1", "/triggers?page=1&page_size=10")).await);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["provider"], "ticker");
    assert_eq!(list[0]["plugin_unique_identifier"], tr_uid.as_str());
    let one = assert_ok(&d.get(&m("t1", "/trigger?plugin_id=test/tick&provider=ticker")).await);
    assert_eq!(one["declaration"]["identity"]["name"], "ticker");
    assert_eq!(assert_ok(&d.get(&m("t1", "/installation/ids?category=datasource")).await), json!({"plugin_ids": ["test/crawl"]}));
    assert_eq!(assert_ok(&d.get(&m("t1", "/installation/ids?category=trigger")).await), json!({"plugin_ids": ["test/tick"]}));
    assert_eq!(assert_ok(&d.get(&m("t1", "/trigger/list?page=1&page_size=10")).await)["list"][0]["plugin_id"], "test/tick");
}
on_every_backend!(datasource_and_trigger_providers, datasource_and_trigger_providers);

/// Every authenticated route answers 401 without the key, and no route needs more than the key.
#[tokio::test]
async fn every_tenant_route_requires_the_api_key() {
    let db = TestDb::create(common::Backend::Sqlite).await.unwrap();
    let d = Daemon::start(&db, DaemonOptions::default()).await;
    let uid = "a/b:1.0.0@0123456789abcdef0123456789abcdef";
    let routes: Vec<(&str, String)> = vec![
        ("POST", m("t", "/install/upload/package")),
        ("POST", m("t", "/install/upload/bundle")),
        ("POST", m("t", "/install/identifiers")),
        ("POST", m("t", "/install/upgrade")),
        ("GET", m("t", "/install/tasks?page=1&page_size=1")),
        ("GET", m("t", "/install/tasks/x")),
        ("POST", m("t", "/install/tasks/delete_all")),
        ("POST", m("t", "/install/tasks/x/delete")),
        ("POST", m("t", &format!("/install/tasks/x/delete/{uid}"))),
        ("GET", m("t", &format!("/decode/from_identifier?plugin_unique_identifier={}", enc(uid)))),
        ("GET", m("t", &format!("/fetch/manifest?plugin_unique_identifier={}", enc(uid)))),
        ("GET", m("t", &format!("/fetch/identifier?plugin_unique_identifier={}", enc(uid)))),
        ("GET", m("t", &format!("/fetch/readme?plugin_unique_identifier={}", enc(uid)))),
        ("POST", m("t", "/uninstall")),
        ("GET", m("t", "/list?page=1&page_size=1")),
        ("GET", m("t", "/installation/ids?category=tool")),
        ("GET", m("t", "/tool/list?page=1&page_size=1")),
        ("POST", m("t", "/installation/fetch/batch")),
        ("POST", m("t", "/installation/missing")),
        ("GET", m("t", "/models/bindings")),
        ("GET", m("t", "/models?page=1&page_size=1")),
        ("GET", m("t", "/tools?page=1&page_size=1")),
        ("GET", m("t", "/tool?plugin_id=a/b&provider=c")),
        ("POST", m("t", "/tools/check_existence")),
        ("GET", m("t", "/agent_strategies?page=1&page_size=1")),
        ("GET", m("t", "/agent_strategy?plugin_id=a/b&provider=c")),
        ("GET", m("t", "/datasources?page=1&page_size=1")),
        ("GET", m("t", "/datasource?plugin_id=a/b&provider=c")),
        ("GET", m("t", "/triggers?page=1&page_size=1")),
        ("GET", m("t", "/trigger?plugin_id=a/b&provider=c")),
        ("GET", "/plugin/t/asset/x.svg".to_string()),
        ("GET", format!("/plugin/t/extract-asset/?plugin_unique_identifier={}&file_path=x", enc(uid))),
        ("POST", "/plugin/t/debugging/key".to_string()),
        ("POST", "/plugin/t/endpoint/setup".to_string()),
        ("GET", "/plugin/t/endpoint/list?page=1&page_size=1".to_string()),
        ("POST", "/plugin/t/dispatch/tool/invoke".to_string()),
    ];
    for (method, path) in &routes {
        let r = d.client.request(method.parse().unwrap(), d.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{method} {path} without a key");
        let r = d.client.request(method.parse().unwrap(), d.url(path)).header("X-Api-Key", &d.key).send().await.unwrap();
        assert_ne!(r.status().as_u16(), 401, "{method} {path} with the key");
        assert_ne!(r.status().as_u16(), 404, "{method} {path} is routed");
    }
}

// ---------------------------------------------------------------------------------------------

/// The names in a directory, sorted.
fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A daemon killed in the middle of an upload leaves its temporary file in `<storage>/.uploads`; the
/// next start removes it (and any other file directly in that directory older than the start), says
/// how many in its log, leaves everything else alone, and uploads work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_files_left_by_a_killed_daemon_are_removed_at_start() {
    use tokio::io::AsyncWriteExt;

    let db = TestDb::create(common::Backend::Sqlite).await.unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&db, DaemonOptions { workdir: Some(workdir.path().to_path_buf()), ..Default::default() }).await;
    let uploads = workdir.path().join("storage/.uploads");

    // An upload whose body stops half way: the daemon is receiving it into a temporary file.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", d.port)).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {}\r\nContent-Type: multipart/form-data; boundary=cut-short\r\n\
         Content-Length: 10000000\r\n\r\n--cut-short\r\nContent-Disposition: form-data; name=\"dify_pkg\"; \
         filename=\"p.difypkg\"\r\nContent-Type: application/octet-stream\r\n\r\n",
        m("t1", "/install/upload/package"),
        d.key
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&[7u8; 64 << 10]).await.unwrap();
    socket.flush().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let half_written = loop {
        let receiving: Vec<_> = std::fs::read_dir(&uploads)
            .map(|entries| entries.flatten().filter(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false)).map(|e| e.path()).collect())
            .unwrap_or_default();
        if let Some(path) = receiving.into_iter().next() {
            break path;
        }
        assert!(std::time::Instant::now() < deadline, "no upload file appeared in {}; log:\n{}", uploads.display(), d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Besides it: an older file directly in the directory (removed), and things that are not the
    // directory's own files (kept): a file in a subdirectory and a file next to the directory.
    let older = uploads.join("older-upload");
    std::fs::write(&older, b"left from an even earlier run").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&older).unwrap().set_modified(an_hour_ago).unwrap();
    std::fs::create_dir_all(uploads.join("nested")).unwrap();
    let nested = uploads.join("nested/kept");
    std::fs::write(&nested, b"not directly in .uploads").unwrap();
    let beside = workdir.path().join("storage/not-an-upload");
    std::fs::write(&beside, b"outside .uploads").unwrap();
    for path in [&nested, &beside] {
        std::fs::File::options().write(true).open(path).unwrap().set_modified(an_hour_ago).unwrap();
    }

    d.restart_after_kill().await;
    drop(socket);
    assert!(!half_written.exists(), "the half-written upload {} is still there", half_written.display());
    assert!(!older.exists(), "the older upload file is still there");
    assert!(nested.exists() && beside.exists(), "only files directly in .uploads are removed");
    assert_eq!(dir_names(&uploads), vec!["nested".to_string()]);
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("removed temporary upload files left by an earlier run"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("removed=2"), "{line}");

    // A fresh upload goes through the same directory and its file goes with the request.
    let pkg = fixture_bytes("dummy_plugin.difypkg");
    let decoded = assert_ok(&d.upload_package("t1", &pkg, None).await);
    assert!(decoded["unique_identifier"].as_str().is_some_and(|uid| uid.contains('@')), "{decoded}");
    assert_eq!(dir_names(&uploads), vec!["nested".to_string()]);

    // A clean restart finds nothing to remove and says nothing about it.
    d.restart_after_kill().await;
    let lines = d.log().lines().filter(|l| l.contains("removed temporary upload files")).count();
    assert_eq!(lines, 1, "{}", d.log());
    assert!(nested.exists());
}
