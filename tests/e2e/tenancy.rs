//! Multi-tenancy for integrators: organizations, users within their tiers, refresh rotation,
//! signing-key rotation, API keys, and the audit log, as two ISPs and a region see them.

use std::time::Duration;

use reqwest::Method;
use reqwest::StatusCode;
use roost_tests::on_both_backends;

use super::*;

/// Two ISPs and a region of the first, with an org-admin in each ISP.
struct Tenants {
    isp_a_admin: String,
    isp_b_admin: String,
}

async fn two_isps(h: &Harness) -> Tenants {
    h.org("isp-a", None).await;
    h.org("isp-b", None).await;
    h.org("isp-a-north", Some("isp-a")).await;
    Tenants {
        isp_a_admin: h.user("isp-a", "admin@isp-a.example", "org-admin").await,
        isp_b_admin: h.user("isp-b", "admin@isp-b.example", "org-admin").await,
    }
}

fn slugs(list: &JsonValue) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|o| o["slug"].as_str().unwrap().to_owned()).collect()
}

/// The JWT header's `kid`.
fn kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: JsonValue =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn refresh(h: &Harness, token: &JsonValue) -> (StatusCode, JsonValue) {
    let response =
        h.http.post(h.url("/api/v1/auth/refresh")).json(&json!({"refresh_token": token})).send().await.unwrap();
    (response.status(), response.json().await.unwrap_or(JsonValue::Null))
}

on_both_backends! {
    async fn organizations_nest_and_each_admin_manages_only_below_itself(backend: Backend) {
        let h = Harness::start(backend).await;
        let t = two_isps(&h).await;

        let (status, list) = h.request_as(&t.isp_a_admin, Method::GET, "/api/v1/orgs", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(slugs(&list), ["isp-a", "isp-a-north"]);
        let (status, _) = h.request_as(&t.isp_a_admin, Method::GET, "/api/v1/orgs/isp-b", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a sibling is invisible");

        // An ISP's admin creates regions below itself, never beside it.
        let (status, south) = h
            .request_as(&t.isp_a_admin, Method::POST, "/api/v1/orgs", Some(json!({"name": "South", "slug": "isp-a-south"})))
            .await;
        assert_eq!((status, south["parent"].as_str()), (StatusCode::CREATED, Some("isp-a")), "{south}");
        let (status, problem) = h
            .request_as(&t.isp_a_admin, Method::POST, "/api/v1/orgs", Some(json!({"name": "X", "slug": "x", "parent": "isp-b"})))
            .await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_organization")));
        let (status, problem) = h
            .request_as(&t.isp_a_admin, Method::POST, "/api/v1/orgs", Some(json!({"name": "Dup", "slug": "isp-b"})))
            .await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("slug_taken")));
        let (status, problem) = h.post("/api/v1/orgs", json!({"name": "Bad", "slug": "Not A Slug"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_organization")));
        let (status, problem) = h.post("/api/v1/orgs", json!({"name": "x", "slug": "y", "colour": "red"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")));

        // Its own organization is managed from above.
        let (status, _) =
            h.request_as(&t.isp_a_admin, Method::PATCH, "/api/v1/orgs/isp-a", Some(json!({"name": "Mine"}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, renamed) = h
            .request_as(&t.isp_a_admin, Method::PATCH, "/api/v1/orgs/isp-a-north", Some(json!({"name": "North"})))
            .await;
        assert_eq!((status, renamed["name"].as_str()), (StatusCode::OK, Some("North")));
        let (status, _) = h.request_as(&t.isp_b_admin, Method::DELETE, "/api/v1/orgs/isp-a-north", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // What still hangs off an organization keeps it, and the answer says what.
        let (status, problem) = h.request(Method::DELETE, "/api/v1/orgs/isp-a", None).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("organization_not_empty")));
        assert!(problem["detail"].as_str().unwrap().contains("1 user and 2 child organizations"), "{problem}");
        let (status, _) = h.request_as(&t.isp_a_admin, Method::DELETE, "/api/v1/orgs/isp-a-south", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, list) = h.request_as(&t.isp_a_admin, Method::GET, "/api/v1/orgs", None).await;
        assert_eq!(slugs(&list), ["isp-a", "isp-a-north"]);
        h.finish().await;
    }

    async fn users_act_within_their_tiers_and_lose_access_within_seconds(backend: Backend) {
        let h = Harness::start(backend).await;
        let t = two_isps(&h).await;
        let create = |body: JsonValue| h.request_as(&t.isp_a_admin, Method::POST, "/api/v1/users", Some(body));

        let (status, problem) = create(json!({"email": "boss@isp-a.example", "password": USER_PASSWORD, "role": "platform-admin"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("invalid_role")), "{problem}");
        let (status, problem) = create(json!({"email": "spy@isp-a.example", "password": USER_PASSWORD, "role": "basic", "org": "isp-b"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_organization")));
        assert!(!problem.to_string().contains("ISP-B"), "no other tenant's name in an error: {problem}");
        let (status, problem) = create(json!({"email": "admin@isp-b.example", "password": USER_PASSWORD, "role": "basic"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("email_taken")));
        let (status, problem) = create(json!({"email": "short@isp-a.example", "password": "short", "role": "basic"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_user")));
        let (status, tech) = create(json!({"email": "tech@isp-a.example", "password": USER_PASSWORD, "role": "basic", "org": "isp-a-north"})).await;
        assert_eq!((status, tech["org"].as_str()), (StatusCode::CREATED, Some("isp-a-north")), "{tech}");
        let tech_id = tech["id"].as_i64().unwrap();

        // A basic user operates devices but manages nobody; it reads itself.
        let tech_token = h.login("tech@isp-a.example", USER_PASSWORD).await.unwrap();
        let (status, _) = h.request_as(&tech_token, Method::GET, "/api/v1/users", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, me) = h.request_as(&tech_token, Method::GET, &format!("/api/v1/users/{tech_id}"), None).await;
        assert_eq!((status, me["email"].as_str()), (StatusCode::OK, Some("tech@isp-a.example")));
        let (status, users) = h.request_as(&t.isp_b_admin, Method::GET, "/api/v1/users", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!users.to_string().contains("isp-a"), "isp-b sees none of isp-a's users: {users}");
        let (status, _) = h.request_as(&t.isp_b_admin, Method::GET, &format!("/api/v1/users/{tech_id}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // A password change needs the current one, and ends every login of the user.
        let pair = h.login_pair("tech@isp-a.example", USER_PASSWORD).await;
        let path = format!("/api/v1/users/{tech_id}");
        let (status, _) = h.request_as(&tech_token, Method::PATCH, &path, Some(json!({"password": "a brand new password"}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = h
            .request_as(&tech_token, Method::PATCH, &path, Some(json!({"password": "a brand new password", "current_password": USER_PASSWORD})))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = h.request_as(&tech_token, Method::GET, "/api/v1/devices", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "access tokens from before the change stop");
        assert_eq!(refresh(&h, &pair["refresh_token"]).await.0, StatusCode::UNAUTHORIZED, "and so do refresh tokens");
        let tech_token = h.login("tech@isp-a.example", "a brand new password").await.unwrap();

        // Disabled through the API: refused at once.
        let (status, _) = h.request_as(&t.isp_a_admin, Method::PATCH, &path, Some(json!({"disabled": true}))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = h.request_as(&tech_token, Method::GET, "/api/v1/devices", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(h.login("tech@isp-a.example", "a brand new password").await.is_err());

        // Disabled behind the API's back (in the database, as the probe did): refused within
        // seconds, not at the token's expiry.
        let app = h.app().clone();
        let b_token = t.isp_b_admin.clone();
        let (status, _) = h.request_as(&b_token, Method::GET, "/api/v1/devices", None).await;
        assert_eq!(status, StatusCode::OK);
        let statement = app.store.statement("UPDATE users SET disabled = TRUE WHERE email = ?", ["admin@isp-b.example".into()]);
        sea_orm::ConnectionTrait::execute_raw(app.store.db(), statement).await.unwrap();
        let started = std::time::Instant::now();
        loop {
            let (status, _) = h.request_as(&b_token, Method::GET, "/api/v1/devices", None).await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "a disabled user's token still works after 10 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Nobody changes their own tier, and nobody changes a user above theirs.
        let (status, _) = h.request_as(&t.isp_a_admin, Method::GET, "/api/v1/users?org=isp-b", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, list) = h.request_as(&t.isp_a_admin, Method::GET, "/api/v1/users", None).await;
        assert_eq!(status, StatusCode::OK);
        let own_id = list["items"].as_array().unwrap().iter().find(|u| u["email"] == "admin@isp-a.example").unwrap()["id"].as_i64().unwrap();
        let (status, _) = h.request_as(&t.isp_a_admin, Method::PATCH, &format!("/api/v1/users/{own_id}"), Some(json!({"role": "platform-admin"}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = h.request_as(&t.isp_a_admin, Method::DELETE, &path, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        h.finish().await;
    }

    async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_login(backend: Backend) {
        let h = Harness::start(backend).await;
        let first = h.login_pair(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let (status, second) = refresh(&h, &first["refresh_token"]).await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(second["refresh_token"], first["refresh_token"], "refresh tokens rotate");
        let (status, _) = h.request_as(second["access_token"].as_str().unwrap(), Method::GET, "/api/v1/devices", None).await;
        assert_eq!(status, StatusCode::OK);

        // The first token again: someone kept a copy. The whole login ends, the thief's and the
        // owner's.
        let (status, problem) = refresh(&h, &first["refresh_token"]).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("refresh_token_reused")));
        assert_eq!(refresh(&h, &second["refresh_token"]).await.0, StatusCode::UNAUTHORIZED);

        // Another login is unaffected; logging out ends it.
        let other = h.login_pair(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let logout = h.http.post(h.url("/api/v1/auth/logout")).json(&json!({"refresh_token": other["refresh_token"]})).send().await.unwrap();
        assert_eq!(logout.status(), StatusCode::NO_CONTENT);
        assert_eq!(refresh(&h, &other["refresh_token"]).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(refresh(&h, &json!("rrt_made-up")).await.0, StatusCode::UNAUTHORIZED);
        h.finish().await;
    }

    async fn signing_keys_rotate_without_signing_anyone_out(backend: Backend) {
        let h = Harness::start(backend).await;
        let before = h.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
        h.roost_command(&["keys", "rotate"]).await.unwrap();
        let after = h.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
        assert_ne!(kid(&before), kid(&after), "new tokens are signed with the new key");
        for token in [&before, &after] {
            let (status, _) = h.request_as(token, Method::GET, "/api/v1/devices", None).await;
            assert_eq!(status, StatusCode::OK, "tokens of both keys stay valid");
        }
        // A token naming a key nobody has is refused.
        let header = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"0000"}"#)
        };
        let forged = format!("{header}.{}", after.split_once('.').unwrap().1);
        let (status, _) = h.request_as(&forged, Method::GET, "/api/v1/devices", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        h.finish().await;
    }

    async fn api_keys_act_for_their_organization_within_a_rate_limit(backend: Backend) {
        let h = Harness::start(backend).await;
        let t = two_isps(&h).await;
        let create = |body: JsonValue| h.request_as(&t.isp_a_admin, Method::POST, "/api/v1/api-keys", Some(body));
        let (status, problem) = create(json!({"name": "crm", "role": "basic", "org": "isp-b"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_organization")));
        let (status, problem) = create(json!({"name": "crm", "role": "platform-admin"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("invalid_role")));
        let (status, problem) = create(json!({"name": "crm", "role": "basic", "expires_at": "2001-01-01T00:00:00Z"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_api_key")));
        let (status, created) = create(json!({"name": "crm", "role": "basic", "rate_limit_per_minute": 5})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let key = created["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with(&created["prefix"].as_str().unwrap().to_owned()));
        assert_eq!(created["org"], "isp-a");

        // Shown once: lists never carry it.
        let (_, list) = h.request_as(&t.isp_a_admin, Method::GET, "/api/v1/api-keys", None).await;
        assert!(!list.to_string().contains(&key));
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let (_, other) = h.request_as(&t.isp_b_admin, Method::GET, "/api/v1/api-keys", None).await;
        assert_eq!(other["items"].as_array().unwrap().len(), 0);

        // Accepted as a bearer token and as X-API-Key; scoped and tiered like a user.
        let (status, orgs) = h.request_as(&key, Method::GET, "/api/v1/orgs", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(slugs(&orgs), ["isp-a", "isp-a-north"]);
        let (status, _) = h.request_as(&key, Method::POST, "/api/v1/orgs", Some(json!({"name": "n", "slug": "n"}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a basic key manages no organization");
        let response = h.http.get(h.url("/api/v1/devices")).header("X-API-Key", &key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-limit"], "5");
        assert_eq!(response.headers()["ratelimit-remaining"], "2");

        // Five a minute: the sixth is refused and told when to come back.
        for _ in 0..2 {
            assert_eq!(h.request_as(&key, Method::GET, "/api/v1/devices", None).await.0, StatusCode::OK);
        }
        let over = h.http.get(h.url("/api/v1/devices")).header("X-API-Key", &key).send().await.unwrap();
        assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(over.headers()["ratelimit-remaining"], "0");
        let retry: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=12).contains(&retry), "one request comes back every 12 s: {retry}");
        assert_eq!(over.json::<JsonValue>().await.unwrap()["code"], "rate_limited");
        // Another key has its own budget.
        let (_, second) = create(json!({"name": "billing", "role": "read-only"})).await;
        let (status, _) = h.request_as(second["key"].as_str().unwrap(), Method::GET, "/api/v1/devices", None).await;
        assert_eq!(status, StatusCode::OK);

        let (_, list) = h.request_as(&t.isp_a_admin, Method::GET, "/api/v1/api-keys", None).await;
        assert!(list["items"][0]["last_used_at"].is_string(), "{list}");

        // Revoked: refused at once; unknown keys likewise.
        let id = created["id"].as_i64().unwrap();
        let (status, _) = h.request_as(&t.isp_b_admin, Method::DELETE, &format!("/api/v1/api-keys/{id}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = h.request_as(&t.isp_a_admin, Method::DELETE, &format!("/api/v1/api-keys/{id}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = h.request_as(&key, Method::GET, "/api/v1/orgs", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = h.request_as("roost_not-a-key", Method::GET, "/api/v1/orgs", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        h.finish().await;
    }

    async fn every_mutation_is_audited_and_each_tenant_reads_its_own(backend: Backend) {
        let h = Harness::start(backend).await;
        let t = two_isps(&h).await;
        let (status, _) = h
            .request_as(&t.isp_a_admin, Method::POST, "/api/v1/orgs", Some(json!({"name": "South", "slug": "isp-a-south"})))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = h.request_as(&t.isp_a_admin, Method::PATCH, "/api/v1/orgs/isp-a", Some(json!({"name": "x"}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = h
            .request_as(&t.isp_b_admin, Method::POST, "/api/v1/api-keys", Some(json!({"name": "b-crm", "role": "basic"})))
            .await;
        assert_eq!(status, StatusCode::CREATED);

        let (status, log) = h.request_as(&t.isp_a_admin, Method::GET, "/api/v1/audit", None).await;
        assert_eq!(status, StatusCode::OK, "{log}");
        let entries = log["items"].as_array().unwrap();
        let created = entries.iter().find(|e| e["action"] == "POST /api/v1/orgs" && e["status"] == 201).expect("the creation");
        assert_eq!(created["actor_name"], "admin@isp-a.example");
        assert!(created["actor"].as_str().unwrap().starts_with("user:"));
        assert_eq!(created["org"], "isp-a");
        assert_eq!(created["target"], "/api/v1/orgs");
        assert_eq!(created["source_address"], "127.0.0.1");
        assert!(entries.iter().any(|e| e["action"] == "PATCH /api/v1/orgs/{slug}" && e["status"] == 403 && e["success"] == false));
        assert!(entries.iter().any(|e| e["action"] == "POST /api/v1/auth/login" && e["actor_name"] == "admin@isp-a.example"));
        assert!(!log.to_string().contains("isp-b"), "none of isp-b's entries: {log}");
        let (_, failed) = h.request_as(&t.isp_a_admin, Method::GET, "/api/v1/audit?failed=true", None).await;
        assert!(failed["items"].as_array().unwrap().iter().all(|e| e["success"] == false));
        assert!(!failed["items"].as_array().unwrap().is_empty());

        // The platform sees everyone's; a basic user reads none.
        let (_, all) = h.get("/api/v1/audit?action=POST%20/api/v1/api-keys").await;
        assert_eq!(all["items"].as_array().unwrap().len(), 1);
        assert_eq!(all["items"][0]["org"], "isp-b");
        let basic = h.user("isp-a", "basic@isp-a.example", "basic").await;
        let (status, _) = h.request_as(&basic, Method::GET, "/api/v1/audit", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        h.finish().await;
    }
}
