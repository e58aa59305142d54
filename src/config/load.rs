//! Loading: the file, then environment overrides, then secrets and relative paths, then validation.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Config, FIELDS};

/// Prefix of the environment variables that override config keys.
const ENV_PREFIX: &str = "LEADSCORE_";

/// Why a config file cannot be used. Every variant names the file, and errors at a place in the file also
/// name the line and column, so an operator can fix it without guessing; `leadscore` exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read the config file: {message}", file.display())]
    Io {
        /// The config file.
        file: PathBuf,
        /// The operating system's reason.
        message: String,
    },
    /// Bad TOML, an unknown key or a value of the wrong type.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Parse {
        /// The config file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A `LEADSCORE_<SECTION>__<KEY>` variable names no key, or has a value the key cannot take.
    #[error("{}: environment variable {variable}: {message}", file.display())]
    Env {
        /// The config file the override applies to.
        file: PathBuf,
        /// The variable's name.
        variable: String,
        /// What is wrong.
        message: String,
    },
    /// A secret's environment variable is unset or its file cannot be read.
    #[error("{}: {key}: {message}", file.display())]
    Secret {
        /// The config file.
        file: PathBuf,
        /// The key of the secret, such as `kafka.sasl_password`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The keys are each fine but break a rule together.
    #[error("{}: {message}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The rule that is broken.
        message: String,
    },
}

impl Config {
    /// Loads the config for `leadscore run`, with overrides from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        // `std::env::vars` panics on a variable that is not UTF-8; such a variable cannot be an override.
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Config::load_with_env(path, &env)
    }

    /// [`Config::load`] with the environment passed in, so tests need not change the process's.
    ///
    /// Variables named `LEADSCORE_<SECTION>__<KEY>` override keys, applied in name order. A value becomes
    /// an integer, a float or a bool when it reads as one and the key takes it, and a string otherwise;
    /// `topics.inputs` takes a comma-separated list. Relative paths (the state directory, the rules file,
    /// TLS files, secret files) are relative to the config file's directory, wherever they were given.
    pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let file = || path.to_owned();
        let text =
            std::fs::read_to_string(path).map_err(|err| ConfigError::Io { file: file(), message: err.to_string() })?;
        let parse_error = |err: toml::de::Error| {
            let (line, column) = crate::rules::line_column(&text, err.span().map_or(0, |span| span.start));
            ConfigError::Parse { file: file(), line, column, message: err.message().trim().to_owned() }
        };
        let mut config: Config = toml::from_str(&text).map_err(parse_error)?;

        let mut overrides: Vec<(&str, &str)> = env
            .iter()
            .filter(|(name, _)| name.strip_prefix(ENV_PREFIX).is_some_and(|rest| rest.contains("__")))
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        overrides.sort_unstable();
        if !overrides.is_empty() {
            let mut table: Table = toml::from_str(&text).map_err(parse_error)?;
            for (variable, value) in overrides {
                config = apply_override(&mut table, variable, value).map_err(|message| ConfigError::Env {
                    file: file(),
                    variable: variable.to_owned(),
                    message,
                })?;
            }
        }

        let base = path.parent().unwrap_or(Path::new(""));
        config.resolve(base, env).map_err(|(key, message)| ConfigError::Secret { file: file(), key, message })?;
        config.validate().map_err(|err| ConfigError::Invalid { file: file(), message: err.to_string() })?;
        Ok(config)
    }

    /// Makes relative paths relative to `base` and reads the secrets.
    fn resolve(&mut self, base: &Path, env: &[(String, String)]) -> Result<(), (&'static str, String)> {
        let kafka = &mut self.kafka;
        let optional_paths =
            [&mut kafka.ssl_ca_location, &mut kafka.ssl_certificate_location, &mut kafka.ssl_key_location];
        let paths = [&mut self.state.dir, &mut self.rules.path].into_iter().chain(optional_paths.into_iter().flatten());
        for path in paths {
            *path = base.join(path.strip_prefix(".").unwrap_or(path));
        }
        let secrets = [
            ("kafka.sasl_username", &mut kafka.sasl_username),
            ("kafka.sasl_password", &mut kafka.sasl_password),
            ("kafka.ssl_key_password", &mut kafka.ssl_key_password),
            ("http.token", &mut self.http.token),
        ];
        for (key, secret) in secrets {
            if let Some(secret) = secret {
                secret.resolve(base, env).map_err(|message| (key, message))?;
            }
        }
        Ok(())
    }
}

/// Sets one key from a variable and returns the config it gives. The table is known to be a valid config
/// before the call, so a failure is this variable's fault.
fn apply_override(table: &mut Table, variable: &str, raw: &str) -> Result<Config, String> {
    let rest = variable.strip_prefix(ENV_PREFIX).unwrap_or(variable);
    let (section, key) = rest.split_once("__").unwrap_or((rest, ""));
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    if !FIELDS.iter().any(|(name, _, _)| name.split_once('.') == Some((&section, &key))) {
        return Err(format!(
            "there is no configuration key {section}.{key}; overrides are named like LEADSCORE_KAFKA__BROKERS"
        ));
    }
    let mut first_error = None;
    for candidate in candidates(&key, raw) {
        let entry = table.entry(section.clone()).or_insert_with(|| Value::Table(Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            return Err(format!("[{section}] is not a table"));
        };
        section_table.insert(key.clone(), candidate);
        match table.clone().try_into::<Config>() {
            Ok(config) => return Ok(config),
            Err(err) => {
                first_error.get_or_insert_with(|| err.message().trim().to_owned());
            }
        }
    }
    Err(first_error.unwrap_or_default())
}

/// The values an override may stand for, most specific first: whether `10` is a number or a client id
/// depends on the key, and the config's types are what know.
fn candidates(key: &str, raw: &str) -> Vec<Value> {
    if key == "inputs" {
        let topics = raw.split(',').map(str::trim).filter(|topic| !topic.is_empty());
        return vec![Value::Array(topics.map(|topic| Value::String(topic.to_owned())).collect())];
    }
    let typed = (raw.parse().map(Value::Integer).ok())
        .or_else(|| raw.parse().map(Value::Float).ok())
        .or_else(|| raw.parse().map(Value::Boolean).ok());
    typed.into_iter().chain([Value::String(raw.to_owned())]).collect()
}
