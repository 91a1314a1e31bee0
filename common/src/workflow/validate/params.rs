//! `params:`: declared run parameters with their rules (type, allowed values, pattern, bounds),
//! and the check that a workflow's required parameters can be given.

use super::*;

static PARAM_KEYS: LazyLock<Vec<&str>> = LazyLock::new(|| schema::names(schema::PARAM));

/// `params`: each entry is `name: default` (an optional string) or a map of [`PARAM_KEYS`].
/// Returns the defaults (empty for a parameter without one) and the rules.
pub(super) fn read_params(
    v: &mut V<'_>,
    node: &Node,
    field: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, ParamRule>) {
    let mut defaults = BTreeMap::new();
    let mut rules = BTreeMap::new();
    // `OUTPOST_PARAM_<NAME>` of each parameter: two names must not share one variable.
    let mut env_of: BTreeMap<String, String> = BTreeMap::new();
    for (k, kpos, n) in v.map_entries(node, field, "parameter").unwrap_or_default() {
        let f = join_dot(field, &k);
        if !valid_ident(&k) {
            v.err(
                kpos,
                &f,
                format!("invalid name `{k}` (letters, digits, `_` and `-`)"),
            );
            continue;
        }
        let env = crate::template::param_var(&k);
        if let Some(other) = env_of.get(&env) {
            v.err(
                kpos,
                &f,
                format!("`{k}` and `{other}` would both be passed as {env}: rename one"),
            );
            continue;
        }
        env_of.insert(env, k.clone());
        let rule = if matches!(n.value, Value::Map(_)) {
            read_param_rule(v, n, &f)
        } else {
            v.scalar(n, &f).map(|s| ParamRule {
                default: Some(s),
                ..ParamRule::default()
            })
        };
        if let Some(rule) = rule {
            defaults.insert(k.clone(), rule.default.clone().unwrap_or_default());
            rules.insert(k, rule);
        }
    }
    (defaults, rules)
}

/// The long form of one parameter.
pub(super) fn read_param_rule(v: &mut V<'_>, node: &Node, f: &str) -> Option<ParamRule> {
    let entries = v.map_entries(node, f, "key")?;
    let mut ty = ParamType::String;
    let mut ty_pos = node.pos;
    let mut enum_type = false;
    let mut values: Option<(Pos, Vec<String>)> = None;
    let mut pattern = None;
    let mut required = false;
    let mut default: Option<(Pos, String)> = None;
    for (key, kpos, n) in entries {
        let kf = join_dot(f, &key);
        match key.as_str() {
            "type" => {
                ty_pos = n.pos;
                let t = v.enum_value(
                    n,
                    &kf,
                    &[
                        ("string", 0u8),
                        ("integer", 1),
                        ("number", 2),
                        ("boolean", 3),
                        ("enum", 4),
                    ],
                );
                ty = match t {
                    Some(1) => ParamType::Integer,
                    Some(2) => ParamType::Number,
                    Some(3) => ParamType::Boolean,
                    _ => ParamType::String,
                };
                enum_type = t == Some(4);
            }
            "values" => {
                let Value::Seq(items) = &n.value else {
                    v.type_err(n, &kf, "a list of values");
                    continue;
                };
                let list: Vec<String> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, it)| v.scalar(it, &format!("{kf}[{i}]")))
                    .collect();
                if list.is_empty() {
                    v.err(n.pos, &kf, "must list at least one value");
                }
                values = Some((n.pos, list));
            }
            "pattern" => {
                if let Some(p) = v.string(n, &kf) {
                    match regex_lite::Regex::new(&crate::params::anchored(&p)) {
                        Ok(r) => pattern = Some(r),
                        Err(e) => {
                            let why = e.to_string();
                            let why = why.lines().last().unwrap_or_default().trim().to_string();
                            v.err(n.pos, &kf, format!("invalid pattern `{p}`: {why}"));
                        }
                    }
                }
            }
            "required" => required = v.bool(n, &kf).unwrap_or(false),
            "default" => default = v.scalar(n, &kf).map(|s| (n.pos, s)),
            _ => v.unknown_key(kpos, &kf, &key, &PARAM_KEYS),
        }
    }
    match (enum_type, values) {
        (true, Some((_, list))) => ty = ParamType::Enum(list),
        (true, None) => v.err(
            ty_pos,
            &join_dot(f, "type"),
            "`type: enum` needs `values: [..]`",
        ),
        (false, Some((pos, _))) => v.err(
            pos,
            &join_dot(f, "values"),
            "`values` applies only to `type: enum`",
        ),
        (false, None) => {}
    }
    let rule = ParamRule {
        ty,
        pattern,
        required,
        default: default.as_ref().map(|(_, d)| d.clone()),
    };
    if let Some((pos, d)) = &default {
        if required {
            v.err(*pos, &join_dot(f, "default"), "a required parameter has no default (a trigger must give it): drop `required` or `default`");
        } else if let Err(e) = rule.check(d) {
            v.err(
                *pos,
                &join_dot(f, "default"),
                format!("the default `{d}` {e}"),
            );
        }
    }
    // Declared even when its rule has a mistake (reported above): no knock-on errors.
    Some(rule)
}

/// A scheduled run gives no parameters, so a scheduled workflow cannot require one.
pub(super) fn required_params_check(
    v: &mut V<'_>,
    pos: Option<Pos>,
    scheduled: bool,
    rules: &BTreeMap<String, ParamRule>,
) {
    if !scheduled {
        return;
    }
    if let Some((k, _)) = rules.iter().find(|(_, r)| r.required) {
        v.err(pos.unwrap_or(Pos::START), &format!("params.{k}"), "a workflow with a `schedule` cannot require a parameter (scheduled runs give none): give it a default");
    }
}
