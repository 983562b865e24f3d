//! `[[credentials]]` and `[signing]`: the AccessKeys the proxy holds, from the config, the
//! environment or files, with optional STS security tokens; and the opt-in signing of requests
//! that arrive unsigned.

use std::collections::HashMap;
use std::path::Path;

use super::raw::{RawCredential, RawSigning};
use super::{ConfigError, invalid};
use crate::secret::Secret;

/// The default environment variables of the official SDKs.
pub const ENV_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// The secret's variable.
pub const ENV_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// The STS token's variable.
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// The AccessKeys the proxy holds.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// AccessKeyId -> secret.
    pub secrets: HashMap<String, Secret>,
    /// AccessKeyId -> STS security token, for STS credentials.
    pub security_tokens: HashMap<String, Secret>,
}

/// `[signing]`
#[derive(Debug, Clone, Default)]
pub struct SigningSettings {
    /// Sign API requests that arrive unsigned, with this AccessKeyId (off when `None`).
    pub sign_unsigned_as: Option<String>,
}

fn one_of(
    key: &dyn Fn(&str) -> String,
    field: &str,
    inline: &Option<String>,
    var: &Option<String>,
    file: &Option<String>,
    env: &HashMap<String, String>,
    base: &Path,
) -> Result<Option<String>, ConfigError> {
    match (inline, var, file) {
        (None, None, None) => Ok(None),
        (Some(s), None, None) => Ok(Some(s.clone())),
        (None, Some(v), None) => env.get(v).cloned().map(Some).ok_or_else(|| {
            invalid(
                key(&format!("{field}_env")),
                format!("environment variable {v} is not set"),
            )
        }),
        (None, None, Some(f)) => {
            let path = base.join(f);
            std::fs::read_to_string(&path)
                .map(|t| Some(t.trim().to_owned()))
                .map_err(|e| {
                    invalid(
                        key(&format!("{field}_file")),
                        format!("{}: {e}", path.display()),
                    )
                })
        }
        _ => Err(invalid(
            key(field),
            format!("set only one of {field}, {field}_env and {field}_file"),
        )),
    }
}

/// Validates `[[credentials]]`; with none configured, the SDKs' environment variables are used.
pub(super) fn credentials(
    list: &[RawCredential],
    env: &HashMap<String, String>,
    base: &Path,
) -> Result<Credentials, ConfigError> {
    let mut out = Credentials::default();
    if list.is_empty() {
        if let (Some(id), Some(secret)) = (env.get(ENV_KEY_ID), env.get(ENV_KEY_SECRET)) {
            if !id.is_empty() && !secret.is_empty() {
                out.secrets.insert(id.clone(), Secret::new(secret.clone()));
                if let Some(t) = env.get(ENV_SECURITY_TOKEN).filter(|t| !t.is_empty()) {
                    out.security_tokens
                        .insert(id.clone(), Secret::new(t.clone()));
                }
            }
        }
        return Ok(out);
    }
    for (i, c) in list.iter().enumerate() {
        let key = |k: &str| format!("credentials[{i}].{k}");
        if c.access_key_id.trim().is_empty() {
            return Err(invalid(key("access_key_id"), "must not be empty"));
        }
        let secret = one_of(
            &key,
            "access_key_secret",
            &c.access_key_secret,
            &c.access_key_secret_env,
            &c.access_key_secret_file,
            env,
            base,
        )?
        .ok_or_else(|| {
            invalid(
                key("access_key_secret"),
                "set one of access_key_secret, access_key_secret_env, access_key_secret_file",
            )
        })?;
        if secret.is_empty() {
            return Err(invalid(key("access_key_secret"), "the secret is empty"));
        }
        if out
            .secrets
            .insert(c.access_key_id.clone(), Secret::new(secret))
            .is_some()
        {
            return Err(invalid(
                key("access_key_id"),
                format!("{} is listed twice", c.access_key_id),
            ));
        }
        if let Some(t) = one_of(
            &key,
            "security_token",
            &c.security_token,
            &c.security_token_env,
            &c.security_token_file,
            env,
            base,
        )? {
            out.security_tokens
                .insert(c.access_key_id.clone(), Secret::new(t));
        }
    }
    Ok(out)
}

/// Validates `[signing]` against the credentials.
pub(super) fn signing(s: &RawSigning, creds: &Credentials) -> Result<SigningSettings, ConfigError> {
    if !s.sign_unsigned {
        return Ok(SigningSettings::default());
    }
    let id = match &s.access_key_id {
        Some(id) if creds.secrets.contains_key(id) => id.clone(),
        Some(id) => {
            return Err(invalid(
                "signing.access_key_id",
                format!("{id} is not in [[credentials]]"),
            ));
        }
        None if creds.secrets.len() == 1 => {
            creds.secrets.keys().next().cloned().unwrap_or_default()
        }
        None => {
            return Err(invalid(
                "signing.access_key_id",
                "name the credential that signs unsigned requests",
            ));
        }
    };
    Ok(SigningSettings {
        sign_unsigned_as: Some(id),
    })
}
