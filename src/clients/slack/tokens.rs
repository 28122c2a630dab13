//! Slack credentials: a static bot token, or OAuth tokens with rotation (12 h access tokens,
//! single-use refresh tokens) stored encrypted in `oauth_tokens`. A refresh is single-flight
//! across processes (a Redis lock, then the stored row is read again before refreshing), the
//! new refresh token is stored in the same statement as the access token, and a refused refresh
//! token marks the credential as needing re-installation instead of looping.

use std::time::Duration;

use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sqlx::PgPool;

use super::crypto;
use crate::clients::error::{FailureKind, UpstreamError};
use crate::config::Keyring;
use crate::store::oauth_tokens;

/// Where a Slack call gets its token.
#[derive(Debug, Clone)]
pub enum SlackCredential {
    /// `SLACK_BOT_TOKEN`: no rotation.
    Static(SecretString),
    /// OAuth with rotation.
    Rotating(std::sync::Arc<TokenStore>),
}

/// A token and the stored version it came from (to tell whether someone refreshed since).
#[derive(Debug, Clone)]
pub struct Token {
    pub value: SecretString,
    pub version: i32,
}

impl SlackCredential {
    /// The token to use now.
    pub async fn token(&self) -> Result<Token, UpstreamError> {
        match self {
            SlackCredential::Static(t) => Ok(Token {
                value: t.clone(),
                version: 0,
            }),
            SlackCredential::Rotating(store) => store.access_token().await,
        }
    }

    /// After `token_expired`: refresh once (unless another process already did).
    pub async fn refresh_after_expiry(&self, seen: i32) -> Result<(), UpstreamError> {
        match self {
            SlackCredential::Static(_) => Err(fail(
                FailureKind::Permanent,
                "the static bot token was refused".to_owned(),
            )),
            SlackCredential::Rotating(store) => store.refresh(Some(seen)).await,
        }
    }
}

fn fail(kind: FailureKind, message: String) -> UpstreamError {
    UpstreamError {
        service: "slack",
        endpoint: "oauth.v2.access".to_owned(),
        kind,
        status: None,
        code: None,
        message,
    }
}

/// Why a stored credential of `status` cannot be used, if it cannot.
fn unusable(status: &str) -> Option<&'static str> {
    match status {
        "needs_reinstall" => Some(
            "the Slack credential needs re-installation (its refresh token was refused); install the app again at /slack/install",
        ),
        "revoked" => Some(
            "the Slack app was uninstalled or its tokens revoked; install it again at /slack/install",
        ),
        _ => None,
    }
}

/// What `oauth.v2.access` answered an install with (tokens inside: never logged).
pub struct Exchanged {
    answer: Value,
}

impl Exchanged {
    /// The workspace (team) that was installed.
    pub fn team_id(&self) -> Option<&str> {
        self.answer["team"]["id"].as_str()
    }

    /// The workspace's name.
    pub fn team_name(&self) -> Option<&str> {
        self.answer["team"]["name"].as_str()
    }

    /// The scopes granted.
    pub fn scopes(&self) -> &str {
        self.answer["scope"].as_str().unwrap_or("")
    }
}

/// OAuth tokens of one workspace.
pub struct TokenStore {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub prefix: String,
    pub keys: Keyring,
    pub workspace: String,
    pub http: reqwest::Client,
    /// `SLACK_API_URL`, ending in `/`.
    pub api_url: url::Url,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Refresh this long before expiry.
    pub refresh_ahead: Duration,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("workspace", &self.workspace)
            .finish()
    }
}

struct Row_ {
    access: String,
    refresh: Option<String>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    status: String,
    version: i32,
}

fn db(e: sqlx::Error) -> UpstreamError {
    fail(
        FailureKind::Transient,
        format!("token store: {}", crate::store::describe_sqlx(&e)),
    )
}

impl TokenStore {
    fn context(&self, field: &str) -> String {
        format!("slack:{}:{field}", self.workspace)
    }

    async fn read(&self) -> Result<Option<Row_>, UpstreamError> {
        let row = oauth_tokens::slack(&self.db, &self.workspace)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let key_id = row.key_id;
        let Some(key) = self.keys.get(&key_id) else {
            return Err(fail(
                FailureKind::Permanent,
                format!(
                    "the stored Slack token was sealed with key {key_id:?}, which is not in ENCRYPTION_KEYS (it has {:?}); put that key back or install Slack again",
                    self.keys.ids()
                ),
            ));
        };
        let open = |sealed: Vec<u8>, field: &str| -> Result<String, UpstreamError> {
            let plain = crypto::open(key, &sealed, &self.context(field))
                .map_err(|e| fail(FailureKind::Permanent, e.to_string()))?;
            String::from_utf8(plain).map_err(|_| {
                fail(
                    FailureKind::Permanent,
                    "stored token is not text".to_owned(),
                )
            })
        };
        let access = open(row.access_token_enc, "access")?;
        let refresh = match row.refresh_token_enc {
            Some(sealed) => Some(open(sealed, "refresh")?),
            None => None,
        };
        Ok(Some(Row_ {
            access,
            refresh,
            expires_at: row.expires_at,
            status: row.status,
            version: row.version,
        }))
    }

    async fn store(
        &self,
        answer: &Value,
        expected_version: Option<i32>,
        installed_by: Option<&str>,
    ) -> Result<(), UpstreamError> {
        let access = answer["access_token"].as_str().ok_or_else(|| {
            fail(
                FailureKind::Permanent,
                "oauth.v2.access answered without access_token".to_owned(),
            )
        })?;
        let seal = |v: &str, field: &str| {
            crypto::seal(self.keys.sealing(), v.as_bytes(), &self.context(field))
                .map_err(|e| fail(FailureKind::Permanent, e.to_string()))
        };
        let access_enc = seal(access, "access")?;
        let refresh_enc = answer["refresh_token"]
            .as_str()
            .map(|r| seal(r, "refresh"))
            .transpose()?;
        let expires_at = answer["expires_in"]
            .as_i64()
            .map(|s| chrono::Utc::now() + chrono::Duration::seconds(s));
        let scopes = answer["scope"].as_str().unwrap_or("");
        let token = oauth_tokens::NewToken {
            workspace: &self.workspace,
            key_id: &self.keys.sealing().id,
            access_token_enc: access_enc,
            refresh_token_enc: refresh_enc,
            scopes,
            expires_at,
            installed: installed_by.map(|by| oauth_tokens::Installed {
                team_name: answer["team"]["name"].as_str().unwrap_or(""),
                by,
            }),
        };
        let saved = oauth_tokens::save_slack(&self.db, &token, expected_version)
            .await
            .map_err(db)?;
        if !saved {
            return Err(fail(
                FailureKind::Transient,
                "the token changed while refreshing".to_owned(),
            ));
        }
        if let Some(at) = expires_at {
            metrics::gauge!("upstream_token_expires_in_seconds", "service" => "slack")
                .set((at - chrono::Utc::now()).num_seconds() as f64);
        }
        Ok(())
    }

    async fn oauth(&self, form: &[(&str, &str)]) -> Result<Value, UpstreamError> {
        let url = self
            .api_url
            .join("oauth.v2.access")
            .map_err(|e| fail(FailureKind::Permanent, e.to_string()))?;
        let response = self
            .http
            .post(url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(form)
            .send()
            .await
            .map_err(|e| {
                crate::clients::transport::transport_error("slack", "oauth.v2.access", &e)
            })?;
        let answer: Value = response.json().await.map_err(|e| {
            crate::clients::transport::transport_error("slack", "oauth.v2.access", &e)
        })?;
        Ok(answer)
    }

    /// Exchanges an install `code` (from the authorize step that sent the browser to
    /// `redirect_uri`) for tokens, without storing them: the caller checks the workspace first.
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: Option<&str>,
    ) -> Result<Exchanged, UpstreamError> {
        let mut form = vec![("grant_type", "authorization_code"), ("code", code)];
        if let Some(uri) = redirect_uri {
            form.push(("redirect_uri", uri));
        }
        let answer = self.oauth(&form).await?;
        if answer["ok"] != true {
            return Err(fail(
                FailureKind::Permanent,
                answer["error"]
                    .as_str()
                    .unwrap_or("install failed")
                    .to_owned(),
            ));
        }
        Ok(Exchanged { answer })
    }

    /// Stores what [`Self::exchange`] returned, replacing any earlier install in one statement.
    pub async fn save_install(
        &self,
        exchanged: &Exchanged,
        installed_by: &str,
    ) -> Result<(), UpstreamError> {
        self.store(&exchanged.answer, None, Some(installed_by))
            .await?;
        metrics::gauge!("slack_credential_needs_reinstall", "workspace" => self.workspace.clone())
            .set(0.0);
        Ok(())
    }

    /// Exchanges an install `code` and stores the tokens.
    pub async fn install(&self, code: &str) -> Result<(), UpstreamError> {
        let exchanged = self.exchange(code, None).await?;
        self.save_install(&exchanged, "cli").await
    }

    /// The access token, refreshed first when it is within `refresh_ahead` of expiry.
    pub async fn access_token(&self) -> Result<Token, UpstreamError> {
        let row = self.read().await?.ok_or_else(|| {
            fail(
                FailureKind::Permanent,
                format!("Slack is not installed for workspace {}", self.workspace),
            )
        })?;
        if let Some(why) = unusable(&row.status) {
            return Err(fail(FailureKind::Permanent, why.to_owned()));
        }
        let due = row.expires_at.is_some_and(|at| {
            at - chrono::Utc::now()
                < chrono::Duration::from_std(self.refresh_ahead).unwrap_or_default()
        });
        if due {
            self.refresh(Some(row.version)).await?;
            let row = self
                .read()
                .await?
                .ok_or_else(|| fail(FailureKind::Permanent, "token vanished".to_owned()))?;
            return Ok(Token {
                value: SecretString::from(row.access),
                version: row.version,
            });
        }
        Ok(Token {
            value: SecretString::from(row.access),
            version: row.version,
        })
    }

    /// Refreshes once across all processes. `seen` is the version the caller used: when the
    /// stored version differs, someone already refreshed and nothing is done.
    pub async fn refresh(&self, seen: Option<i32>) -> Result<(), UpstreamError> {
        let lock = format!("{}:oauth-refresh:slack:{}", self.prefix, self.workspace);
        let me = uuid::Uuid::new_v4().to_string();
        let mut conn = self.redis.clone();
        for _ in 0..100 {
            let got: Option<String> = redis::cmd("SET")
                .arg(&lock)
                .arg(&me)
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query_async(&mut conn)
                .await
                .map_err(|e| {
                    fail(
                        FailureKind::Transient,
                        format!("refresh lock: {}", crate::redis_conn::describe(&e)),
                    )
                })?;
            let current = self.read().await?;
            if current.as_ref().is_some_and(|r| Some(r.version) != seen) {
                if got.is_some() {
                    self.unlock(&lock, &me).await;
                }
                return Ok(());
            }
            if got.is_some() {
                let result = self.refresh_locked(current).await;
                self.unlock(&lock, &me).await;
                return result;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(fail(
            FailureKind::Transient,
            "another process holds the refresh lock".to_owned(),
        ))
    }

    async fn refresh_locked(&self, row: Option<Row_>) -> Result<(), UpstreamError> {
        let row =
            row.ok_or_else(|| fail(FailureKind::Permanent, "Slack is not installed".to_owned()))?;
        if let Some(why) = unusable(&row.status) {
            return Err(fail(FailureKind::Permanent, why.to_owned()));
        }
        let refresh = row
            .refresh
            .ok_or_else(|| fail(FailureKind::Permanent, "no refresh token stored".to_owned()))?;
        let answer = self
            .oauth(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
            .await?;
        if answer["ok"] == true {
            metrics::counter!("slack_token_refreshes_total", "outcome" => "ok").increment(1);
            let stored = self.store(&answer, Some(row.version), None).await;
            self.audit_refresh(if stored.is_ok() { "ok" } else { "failed" }, None)
                .await;
            return stored;
        }
        let error = answer["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .to_owned();
        self.audit_refresh("failed", Some(&error)).await;
        metrics::counter!("slack_token_refreshes_total", "outcome" => error.clone()).increment(1);
        if matches!(
            error.as_str(),
            "invalid_refresh_token"
                | "token_revoked"
                | "invalid_grant_type"
                | "invalid_client_id"
                | "bad_client_secret"
        ) {
            oauth_tokens::mark_needs_reinstall(&self.db, &self.workspace)
                .await
                .map_err(db)?;
            metrics::gauge!("slack_credential_needs_reinstall", "workspace" => self.workspace.clone()).set(1.0);
            tracing::error!(workspace = %self.workspace, error, "Slack refused the refresh token: the app must be installed again");
            return Err(fail(
                FailureKind::Permanent,
                format!("refresh refused ({error}); the Slack credential needs re-installation"),
            ));
        }
        Err(fail(
            FailureKind::Transient,
            format!("refresh failed: {error}"),
        ))
    }

    /// A token refresh is an upstream write: audited (never the token).
    async fn audit_refresh(&self, outcome: &str, error: Option<&str>) {
        let details = serde_json::json!({ "error": error });
        let written = async {
            let mut conn = self.db.acquire().await?;
            let actor = crate::store::audit::Actor::new("worker");
            crate::store::audit::record_outcome(
                &mut conn,
                &actor,
                "slack.token_refresh",
                "slack_workspace",
                &self.workspace,
                outcome,
                details,
            )
            .await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %crate::store::describe_sqlx(&e), "could not audit a token refresh");
        }
    }

    async fn unlock(&self, lock: &str, me: &str) {
        let mut conn = self.redis.clone();
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        );
        let _: Result<i64, _> = script.key(lock).arg(me).invoke_async(&mut conn).await;
    }
}
