//! The console's two languages: English and Simplified Chinese (the design notes' readers).
//! The language is the `outpost_lang` cookie's (set by the switcher on every page), else the
//! first of the browser's `Accept-Language` that the console speaks, else English.
//!
//! Every text is written as a pair at its one place of use (`ctx.tr("Agents", "代理")`), so
//! no text can lack a translation and no catalogue drifts from the pages; messages that come
//! from the operations layer (errors, diagnostics) stay in English, as in the CLI and the API.

use axum::http::{HeaderMap, header};

/// The name of the cookie that keeps the chosen language.
pub(crate) const LANG_COOKIE: &str = "outpost_lang";

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// `en` or `zh` by language.
    pub fn tr(self, en: &'static str, zh: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }

    /// The value of the `lang` attribute and of the cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// A language code as the switcher or a browser names it (`zh`, `zh-CN`, `zh-Hans`, `en-GB`).
    pub fn parse(s: &str) -> Option<Lang> {
        let primary = s.trim().split(['-', '_', ';']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The language of a request: the cookie, else `Accept-Language` in order of preference,
    /// else English.
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(l) = cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)) {
            return l;
        }
        let Some(accept) = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Lang::En;
        };
        let mut prefs: Vec<(f32, Lang)> = accept
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let lang = Lang::parse(parts.next()?)?;
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, lang))
            })
            .collect();
        // Stable: equal weights keep the browser's order.
        prefs.sort_by(|a, b| b.0.total_cmp(&a.0));
        prefs.first().map(|(_, l)| *l).unwrap_or(Lang::En)
    }
}

/// The value of cookie `name` in a request.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_cookie_wins_then_the_browser_then_english() {
        assert_eq!(Lang::of(&headers(&[])), Lang::En);
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "zh-CN,zh;q=0.9,en;q=0.8")])),
            Lang::Zh
        );
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "de-DE,en;q=0.5,zh;q=0.7")])),
            Lang::Zh
        );
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "fr, de")])),
            Lang::En
        );
        assert_eq!(
            Lang::of(&headers(&[
                ("accept-language", "zh-CN"),
                ("cookie", "a=b; outpost_lang=en")
            ])),
            Lang::En
        );
        assert_eq!(
            Lang::of(&headers(&[("cookie", "outpost_lang=zh-CN")])),
            Lang::Zh
        );
        assert_eq!(Lang::Zh.tr("Agents", "代理"), "代理");
    }
}
