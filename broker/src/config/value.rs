//! How a configuration value is read from the config file (TOML) and from text (an
//! environment variable or a flag), for each type a key can have.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::node::ProcessRoles;
use super::{Voter, parse_controller_voters};

/// A type a configuration key can have: how it is read from TOML and from text. Errors are
/// the reason alone (`"must be a whole number"`); the caller adds the key and the value.
pub(super) trait ConfigValue: Sized {
    fn from_toml(value: &toml::Value) -> Result<Self, String>;

    fn from_text(text: &str) -> Result<Self, String>;

    fn from_os_text(text: &OsStr) -> Result<Self, String> {
        match text.to_str() {
            Some(text) => Self::from_text(text),
            None => Err("is not valid UTF-8".into()),
        }
    }
}

/// The text of a TOML string, or the reason it is not one; `example` shows the right form.
fn toml_str<'a>(value: &'a toml::Value, example: &str) -> Result<&'a str, String> {
    match value {
        toml::Value::String(text) => Ok(text),
        other => Err(format!(
            "must be a string such as {example}, not a {}",
            other.type_str()
        )),
    }
}

macro_rules! integer_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn from_toml(value: &toml::Value) -> Result<Self, String> {
                match value {
                    toml::Value::Integer(n) => Self::in_range(i128::from(*n)),
                    other => Err(format!("must be a whole number, not a {}", other.type_str())),
                }
            }

            fn from_text(text: &str) -> Result<Self, String> {
                match text.trim().parse::<i128>() {
                    Ok(n) => Self::in_range(n),
                    Err(e) => Err(format!("must be a whole number ({e})")),
                }
            }
        }

        impl InRange for $t {
            fn in_range(n: i128) -> Result<Self, String> {
                <$t>::try_from(n).ok().ok_or_else(|| {
                    format!("must be a whole number from {} to {}", <$t>::MIN, <$t>::MAX)
                })
            }
        }
    )*};
}

/// Narrowing a parsed whole number to a key's type.
trait InRange: Sized {
    fn in_range(n: i128) -> Result<Self, String>;
}

integer_value!(i32, i64, u32, u64);

impl ConfigValue for bool {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Boolean(b) => Ok(*b),
            other => Err(format!("must be true or false, not a {}", other.type_str())),
        }
    }

    fn from_text(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("must be true or false".into()),
        }
    }
}

impl ConfigValue for PathBuf {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        toml_str(value, "\"/var/lib/weir\"").map(PathBuf::from)
    }

    fn from_text(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }

    fn from_os_text(text: &OsStr) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
}

impl ConfigValue for SocketAddr {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        Self::from_text(toml_str(value, "\"0.0.0.0:9092\"")?)
    }

    fn from_text(text: &str) -> Result<Self, String> {
        text.trim().parse().map_err(|e| {
            format!(
                "must be IP:PORT, such as 0.0.0.0:9092 or [::]:9092 ({e}); a listen address \
                 takes an IP address, not a host name"
            )
        })
    }
}

impl ConfigValue for String {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        toml_str(value, "\"broker-1.example:9092\"").map(str::to_string)
    }

    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.trim().to_string())
    }
}

impl ConfigValue for Option<String> {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        String::from_toml(value).map(Some)
    }

    fn from_text(text: &str) -> Result<Self, String> {
        String::from_text(text).map(Some)
    }
}

impl ConfigValue for Vec<Voter> {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        Self::from_text(toml_str(value, "\"1@host-1:9094,2@host-2:9094\"")?)
    }

    fn from_text(text: &str) -> Result<Self, String> {
        parse_controller_voters(text).map_err(|e| e.reason)
    }
}

impl ConfigValue for ProcessRoles {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        Self::from_text(toml_str(value, "\"broker,controller\"")?)
    }

    fn from_text(text: &str) -> Result<Self, String> {
        let mut roles = ProcessRoles {
            broker: false,
            controller: false,
        };
        for role in text.split(',').map(str::trim) {
            match role {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                _ => {
                    return Err(format!(
                        "{role:?} is not a role; write broker, controller or broker,controller"
                    ));
                }
            }
        }
        Ok(roles)
    }
}
