//! The hub over HTTP in-process (the API tests use it too): a hub with a real store and a 1-of-1
//! root whose release key signs what is applied, the API and the console on one 127.0.0.1
//! listener, and a "browser"
//! (ureq without redirects or cookie jar: the tests see every status, `Location` and cookie).

use std::sync::Arc;
use std::time::Duration;

use outpost_common::trust::{Director, SigningKey};
use outpost_hub::client::Client;
use outpost_hub::gateway::Connections;
use outpost_hub::hub::Hub;
use outpost_hub::store::{Role, Store};
use outpost_net::pki::Ca;

/// A hub serving the API and the console.
pub struct ConsoleHarness {
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    pub conns: Arc<Connections>,
    /// The SHA-256 (hex) of the hub CA's certificate.
    pub ca_sha256: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The credential of the admin `root`.
    pub admin: String,
}

impl ConsoleHarness {
    pub fn new() -> ConsoleHarness {
        Self::with_secure(false)
    }

    /// `secure`: the console believes it is served over HTTPS (its cookies are `Secure`).
    pub fn with_secure(secure: bool) -> ConsoleHarness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("hub.redb")).unwrap());
        let key = || SigningKey::generate().unwrap().0;
        let (release, pkcs8) = SigningKey::generate().unwrap();
        let director = key();
        outpost_hub::init::publish_first_root(
            &store,
            &[key()],
            &[release],
            &director,
            outpost_hub::init::KeyPlan::default(),
            1,
        )
        .unwrap();
        let release = Arc::new(SigningKey::from_pkcs8(&pkcs8).unwrap());
        let ca = Arc::new(Ca::generate("hub CA").unwrap());
        let ca_sha256 = ca.sha256_hex();
        let conns = Connections::new(Duration::from_secs(5));
        let hub = Hub::new(
            store.clone(),
            Arc::new(Director::new(director)),
            Some(release),
            ca,
            conns.clone(),
            "hub",
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (_, admin) = hub
            .create_operator("init", "root", Role::Admin, vec![])
            .unwrap();
        let app = outpost_hub::api::router(hub.clone())
            .merge(outpost_hub::console::router(hub.clone(), secure));
        rt.spawn(async move { axum::serve(listener, app).await });
        ConsoleHarness {
            dir,
            rt,
            hub,
            store,
            conns,
            ca_sha256,
            url,
            admin,
        }
    }

    /// The API client of the admin.
    pub fn api(&self) -> Client {
        Client::new(&self.url, &self.admin, None)
    }

    /// A new operator credential.
    pub fn operator(&self, name: &str, role: Role, pools: &[&str]) -> String {
        self.hub
            .create_operator(
                "root",
                name,
                role,
                pools.iter().map(|p| p.to_string()).collect(),
            )
            .unwrap()
            .1
    }

    /// A browser signed in with `credential`.
    pub fn browser(&self, credential: &str) -> Browser {
        let mut b = Browser::new(&self.url);
        let r = b.post_form("/ui/login", &[("credential", credential)], false);
        assert_eq!(r.status, 303, "sign-in: {}", r.body);
        let cookie = r
            .set_cookies
            .iter()
            .find(|c| c.starts_with("outpost_session="))
            .expect("a session cookie")
            .clone();
        b.session = cookie
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("outpost_session=")
            .to_string();
        b
    }
}

/// One response as the browser got it.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client that behaves like a browser on a console page: it sends the session cookie, an
/// `Origin` of the hub and (for forms) the CSRF token it found on the last page.
pub struct Browser {
    agent: ureq::Agent,
    pub url: String,
    /// The session secret (cookie value).
    pub session: String,
    /// Extra cookies (`outpost_lang=zh-CN`).
    pub cookies: Vec<String>,
}

impl Browser {
    pub fn new(url: &str) -> Browser {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Browser {
            agent,
            url: url.into(),
            session: String::new(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        let mut c = self.cookies.clone();
        if !self.session.is_empty() {
            c.push(format!("outpost_session={}", self.session));
        }
        c.join("; ")
    }

    fn page(mut resp: ureq::http::Response<ureq::Body>) -> Page {
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            set_cookies: resp
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect(),
            headers,
            body: resp.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Page {
        let mut req = self.agent.get(&format!("{}{path}", self.url));
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            req = req.header("cookie", &cookies);
        }
        Self::page(req.call().unwrap())
    }

    /// The CSRF token of the session, as every page's forms carry it.
    pub fn csrf(&self) -> String {
        let page = self.get("/ui/fleet");
        let at = page
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field on the fleet page");
        let rest = &page.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// POST a form to `path` as the page would (its CSRF token when `with_csrf`, our origin).
    pub fn post_form(&self, path: &str, fields: &[(&str, &str)], with_csrf: bool) -> Page {
        let mut pairs: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if with_csrf {
            pairs.push(("csrf".into(), self.csrf()));
        }
        self.post_raw(path, &pairs, Some(&self.url.clone()))
    }

    /// POST exactly these fields with this `Origin` (`None`: no origin header).
    pub fn post_raw(&self, path: &str, fields: &[(String, String)], origin: Option<&str>) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut req = self
            .agent
            .post(&format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded");
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            req = req.header("cookie", &cookies);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        Self::page(req.send(body.as_str()).unwrap())
    }
}
