//! Credentials of upstream calls. The Mailjet agent's JWT is minted here from
//! `MAILJET_MCP_TOKEN` (HS256, `sub` = `MAILJET_AGENT_ID`, `iat`, `exp` = 24 h), cached, minted
//! again at 80 % of its life, and on demand after a 401.

use std::sync::Mutex;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Lifetime of an agent token.
pub const AGENT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Mints and caches the agent's JWTs.
pub struct AgentTokens {
    secret: SecretString,
    agent_id: String,
    cached: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for AgentTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTokens")
            .field("agent_id", &self.agent_id)
            .finish()
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: i64,
    exp: i64,
}

impl AgentTokens {
    /// Tokens for `agent_id` signed with `secret`.
    pub fn new(secret: SecretString, agent_id: &str) -> Self {
        AgentTokens {
            secret,
            agent_id: agent_id.to_owned(),
            cached: Mutex::new(None),
        }
    }

    /// The current token, minted when there is none or it is past 80 % of its life.
    pub fn current(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let renew_at = (AGENT_TOKEN_TTL.as_secs() as i64) * 8 / 10;
        if let Some((token, minted)) = cached.as_ref()
            && now - minted < renew_at
        {
            return Ok(token.clone());
        }
        let token = self.mint(now)?;
        *cached = Some((token.clone(), now));
        metrics::gauge!("upstream_token_expires_in_seconds", "service" => "mailjet")
            .set(AGENT_TOKEN_TTL.as_secs_f64());
        Ok(token)
    }

    /// Forgets the cached token (after a 401), so the next call mints a new one.
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn mint(&self, now: i64) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: &self.agent_id,
            iat: now,
            exp: now + AGENT_TOKEN_TTL.as_secs() as i64,
        };
        let key = jsonwebtoken::EncodingKey::from_secret(self.secret.expose_secret().as_bytes())?;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &key,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_carries_the_agent_and_a_24_hour_expiry_and_is_reused() {
        let tokens = AgentTokens::new(
            SecretString::from("k".repeat(32)),
            "campaign-manager-client",
        );
        let token = tokens.current().expect("mint");
        assert_eq!(tokens.current().expect("cached"), token);
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret("k".repeat(32).as_bytes()).expect("key"),
            &validation,
        )
        .expect("valid");
        assert_eq!(data.claims["sub"], "campaign-manager-client");
        let life =
            data.claims["exp"].as_i64().unwrap_or(0) - data.claims["iat"].as_i64().unwrap_or(0);
        assert_eq!(life, 86_400);
        tokens.invalidate();
        assert!(tokens.current().is_ok());
    }
}
