// Helpers shared by the pages: sign-in, language, fetching, building elements, times,
// charts (uPlot).
"use strict";

const TOKEN_KEY = "mg_token";
// Set when the token came from a password login: signing out then revokes it on the server
// (a pasted token may be a machine's API key, which signing out of a page must not revoke).
const LOGIN_KEY = "mg_login";
// The language a visitor chose in the header, for the server to read (a signed-in user's
// choice is kept on the user record too).
const LANGUAGE_COOKIE = "mg_lang";
// Attributes of the static pages whose text is translated with the page's text nodes.
const TRANSLATED_ATTRIBUTES = ["placeholder", "aria-label", "title"];

const MG = {
  // The signed-in user ({name, role, authenticated}); set by MG.ready before pages use it.
  user: null,
  // The reader's language and its messages (GET /api/i18n); set by MG.ready, English until.
  i18n: {language: "en", languages: [], messages: {}},

  // A message in the reader's language; {name} in it takes params.name.
  t(msgid, params = {}) {
    const text = MG.i18n.messages[msgid] ?? msgid;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  },
  // The name of a code (kind, severity, outcome, status...) in the reader's language; a code
  // the catalogues do not know shows as it is.
  label(group, code) {
    if (code == null || code === "") return "";
    return MG.i18n.messages[`${group}.${code}`] ?? String(code);
  },

  token() {
    return localStorage.getItem(TOKEN_KEY);
  },
  headers(extra = {}) {
    const token = MG.token();
    return token ? {...extra, Authorization: `Bearer ${token}`} : extra;
  },
  async json(url) {
    const resp = await fetch(url, {headers: MG.headers()});
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
    return resp.json();
  },
  // A call that may change something: the token goes in the header (the cookie alone only
  // authorises reads), the body as JSON; an error's detail is shown to the user and thrown.
  async api(method, url, body) {
    const init = {method, headers: MG.headers()};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return MG.send(url, init);
  },
  // A file sent as the body, as it is (a photo from the camera); errors as MG.api's.
  async upload(url, file) {
    const type = file.type || "application/octet-stream";
    return MG.send(url, {method: "POST", headers: MG.headers({"Content-Type": type}), body: file});
  },
  async send(url, init) {
    const method = init.method;
    const resp = await fetch(url, init);
    const data = await resp.json().catch(() => null);
    if (!resp.ok) {
      let detail = data && data.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
      const hint = resp.status === 401 ? ` ${MG.t("(sign in)")}` : "";
      const message = `${method} ${url}: ${resp.status} ${detail || resp.statusText}${hint}`;
      MG.showError(message);
      throw new Error(message);
    }
    MG.showError("");
    return data;
  },
  showError(message) {
    let box = document.querySelector("#mg-error");
    if (!box) {
      box = MG.el("p", {id: "mg-error", class: "error", role: "alert"});
      document.querySelector("main").prepend(box);
    }
    box.textContent = message;
    box.hidden = !message;
  },
  can(...roles) {
    return Boolean(MG.user && MG.user.authenticated && roles.includes(MG.user.role));
  },

  // The header's sign-in control: paste a token, check it with /api/me, keep it in
  // localStorage (for the Authorization header) and a cookie (for EventSource and GETs).
  async signIn(token) {
    const resp = await fetch("/api/me", {headers: {Authorization: `Bearer ${token}`}});
    if (!resp.ok) throw new Error(resp.status === 401 ? MG.t("unknown or revoked token") :
      `HTTP ${resp.status}`);
    localStorage.setItem(TOKEN_KEY, token);
    document.cookie = `${TOKEN_KEY}=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
    location.reload();
  },
  // Name and password for a token that expires (POST /api/login), then as a pasted token.
  async logIn(name, password) {
    const resp = await fetch("/api/login", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({name, password})});
    if (!resp.ok) throw new Error(resp.status === 401 ? MG.t("wrong name or password") :
      `HTTP ${resp.status}`);
    const session = await resp.json();
    localStorage.setItem(LOGIN_KEY, "1");
    await MG.signIn(session.token);
  },
  async signOut() {
    if (localStorage.getItem(LOGIN_KEY) && MG.token()) {
      await fetch("/api/logout", {method: "POST", headers: MG.headers()}).catch(() => null);
    }
    localStorage.removeItem(LOGIN_KEY);
    localStorage.removeItem(TOKEN_KEY);
    document.cookie = `${TOKEN_KEY}=; path=/; SameSite=Strict; max-age=0`;
    location.reload();
  },
  async loadUser() {
    let resp = await fetch("/api/me", {headers: MG.headers()});
    if (resp.status === 401 && MG.token()) {
      // A stored token that no longer works (expired, revoked): forget it, carry on anonymous.
      localStorage.removeItem(TOKEN_KEY);
      localStorage.removeItem(LOGIN_KEY);
      document.cookie = `${TOKEN_KEY}=; path=/; SameSite=Strict; max-age=0`;
      resp = await fetch("/api/me");
    }
    MG.user = resp.ok ? await resp.json() : null;
    MG.drawAuth();
    return MG.user;
  },
  drawAuth() {
    const header = document.querySelector("header");
    let box = header.querySelector("#auth");
    if (!box) {
      box = MG.el("span", {id: "auth", class: "auth"});
      header.append(box);
    }
    if (MG.user && MG.user.authenticated) {
      const out = MG.el("button", {type: "button", id: "sign-out", class: "link"},
        MG.t("Sign out"));
      out.addEventListener("click", MG.signOut);
      box.replaceChildren(
        MG.el("span", {id: "whoami"}, `${MG.user.name} (${MG.label("role", MG.user.role)})`),
        " · ", out);
      return;
    }
    const open = MG.el("button", {type: "button", id: "sign-in", class: "link"}, MG.t("Sign in"));
    const form = MG.el("form", {id: "sign-in-form", class: "sign-in"},
      MG.el("input", {name: "username", placeholder: MG.t("name"), autocomplete: "username",
        "aria-label": MG.t("name")}),
      MG.el("input", {name: "password", type: "password", placeholder: MG.t("password"),
        autocomplete: "current-password", "aria-label": MG.t("password")}),
      MG.el("span", {class: "muted"}, MG.t("or")),
      MG.el("input", {name: "token", type: "password", placeholder: MG.t("paste your token"),
        autocomplete: "off", "aria-label": MG.t("token")}),
      MG.el("button", {type: "submit"}, MG.t("Sign in")),
      MG.el("span", {class: "auth-error"}));
    form.hidden = true;
    open.addEventListener("click", () => {
      form.hidden = !form.hidden;
      if (!form.hidden) form.username.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const token = form.token.value.trim();
      const done = token ? MG.signIn(token) :
        MG.logIn(form.username.value.trim(), form.password.value);
      done.catch((err) => {
        form.querySelector(".auth-error").textContent = err.message;
      });
    });
    box.replaceChildren(open, form);
  },
  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
    return node;
  },
  time(iso) {
    return iso ? new Date(iso).toLocaleString(MG.i18n.language) : "";
  },
  epochTime(seconds) {
    return MG.figure(seconds) ? new Date(seconds * 1000).toLocaleString(MG.i18n.language) :
      MG.DASH;
  },
  clock() {
    return new Date().toLocaleTimeString(MG.i18n.language);
  },
  // Every figure a page shows goes through these: null, undefined, NaN, infinities and
  // anything that is not a number show as a dash instead of throwing or printing "NaN".
  DASH: "—",
  figure(x) {
    return typeof x === "number" && Number.isFinite(x);
  },
  kwh(x) {
    if (!MG.figure(x)) return MG.DASH;
    const size = Math.abs(x);
    return size >= 100 ? x.toFixed(0) : size >= 1 ? x.toFixed(2) : x.toFixed(3);
  },
  num(x, digits = 2) {
    return MG.figure(x) ? x.toFixed(digits) : MG.DASH;
  },
  percent(x) {
    return MG.figure(x) ? `${Math.round(x * 100)} %` : MG.DASH;
  },
  // Photos as thumbnails, each a link to the photo as taken, with who took it, when and where.
  photoStrip(photos) {
    return MG.el("div", {class: "photos"}, ...photos.map((p) => {
      const original = `/api/photos/${p.id}`;
      const picture = p.width != null ?
        MG.el("img", {src: `${original}/thumbnail`, alt: p.file_name || `#${p.id}`, loading: "lazy"}) :
        MG.el("span", {class: "no-thumb"}, MG.t("{type} photo", {type: p.media_type}));
      const where = p.latitude != null ?
        MG.t("at {lat}, {lon}", {lat: p.latitude.toFixed(5), lon: p.longitude.toFixed(5)}) : "";
      const caption = [MG.epochTime(p.uploaded_at), p.uploaded_by,
        p.taken_at && MG.t("taken {time}", {time: p.taken_at}), where].filter(Boolean).join(" · ");
      return MG.el("figure", {class: "photo", dataset: {photo: p.id, sha256: p.sha256}},
        MG.el("a", {href: original, target: "_blank", rel: "noopener"}, picture),
        MG.el("figcaption", {}, caption));
    }));
  },
  lastPathPart() {
    return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  },
  PHASE_COLOURS: ["#c62828", "#f9a825", "#1565c0"],

  // One chart per group of quantities; `pf` is derived from P / (V·I) per phase.
  async plots(container, meter, startEpoch, endEpoch, markEpoch) {
    container.replaceChildren();
    const fields = "v1,v2,v3,i1,i2,i3,in,p1,p2,p3";
    const url = `/api/meters/${encodeURIComponent(meter)}/series?fields=${fields}` +
      `&start=${startEpoch}&end=${endEpoch}&points=600`;
    const series = await MG.json(url);
    if (!series.ts.length) {
      container.append(MG.el("p", {class: "muted"}, MG.t("no readings stored for this window")));
      return 0;
    }
    const v = series.values;
    const pf = [1, 2, 3].map((k) => v[`p${k}`].map((p, j) => {
      const s = v[`v${k}`][j] * v[`i${k}`][j];
      return p == null || !s ? null : p / s;
    }));
    const groups = [
      {title: MG.t("Voltage (V)"), data: [v.v1, v.v2, v.v3], labels: ["V1", "V2", "V3"]},
      {title: MG.t("Current (A)"), data: [v.i1, v.i2, v.i3, v.in],
        labels: ["I1", "I2", "I3", "In"]},
      {title: MG.t("Active power (W)"), data: [v.p1, v.p2, v.p3], labels: ["P1", "P2", "P3"]},
      {title: MG.t("Power factor"), data: pf, labels: ["PF1", "PF2", "PF3"]},
    ];
    const width = Math.max(320, Math.min(container.clientWidth || 900, 1100));
    let drawn = 0;
    for (const g of groups) {
      const keep = g.data.map((col) => col.some((x) => x != null));
      if (!keep.some(Boolean)) continue;
      const box = MG.el("figure", {class: "chart"}, MG.el("figcaption", {}, g.title));
      container.append(box);
      const cols = [series.ts];
      const spec = [{}];
      g.data.forEach((col, k) => {
        if (!keep[k]) return;
        cols.push(col);
        spec.push({label: g.labels[k], stroke: MG.PHASE_COLOURS[k] || "#555", width: 1.5});
      });
      const opts = {
        width, height: 180, series: spec, scales: {x: {time: true}},
        axes: [{}, {size: 70}],
        hooks: markEpoch ? {draw: [(u) => {
          const x = u.valToPos(markEpoch, "x", true);
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#6a1b9a";
          ctx.setLineDash([4, 4]);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.restore();
        }]} : {},
      };
      new uPlot(opts, cols, box);
      drawn += 1;
    }
    return drawn;
  },
};

// The reader's language: its messages, the static page's text in it, the header's switch.
MG.loadLanguage = async function loadLanguage() {
  const resp = await fetch("/api/i18n", {headers: MG.headers()});
  if (!resp.ok) throw new Error(`/api/i18n: HTTP ${resp.status}`);
  MG.i18n = await resp.json();
  document.documentElement.lang = MG.i18n.language;
  MG.translatePage(document.body);
  document.title = MG.t(document.title);
  MG.drawLanguageSwitch();
};

// Put the static page's text (text nodes and a few attributes) in the reader's language;
// an element marked translate="no" (a name such as the brand) keeps its text.
MG.translatePage = function translatePage(root) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (node.parentElement.closest("[translate=no], script, style") ?
      NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode);
  for (const node of texts) {
    const text = node.nodeValue.trim();
    if (text && text in MG.i18n.messages) {
      node.nodeValue = node.nodeValue.replace(text, MG.i18n.messages[text]);
    }
  }
  for (const name of TRANSLATED_ATTRIBUTES) {
    for (const el of root.querySelectorAll(`[${name}]`)) {
      const value = el.getAttribute(name);
      if (value in MG.i18n.messages) el.setAttribute(name, MG.i18n.messages[value]);
    }
  }
};

// The header's language switch: a signed-in user's choice is stored on the server, a
// visitor's in a cookie; the page then loads again in the new language.
MG.drawLanguageSwitch = function drawLanguageSwitch() {
  const header = document.querySelector("header");
  const select = MG.el("select", {id: "language", "aria-label": MG.t("Language")},
    ...MG.i18n.languages.map((l) => MG.el("option", {value: l.code}, l.name)));
  select.value = MG.i18n.language;
  select.addEventListener("change", async () => {
    const language = select.value;
    document.cookie = `${LANGUAGE_COOKIE}=${encodeURIComponent(language)}; path=/; ` +
      "SameSite=Strict; max-age=31536000";
    if (MG.user && MG.user.authenticated) {
      try {
        await MG.api("PUT", "/api/me/language", {language});
      } catch (err) {
        return;  // MG.api has shown the error
      }
    }
    location.reload();
  });
  header.querySelector("#language")?.remove();
  header.append(select);
};

// Every page waits on this before drawing: the language first (the sign-in control is
// drawn in it), then the user, whose role decides what is drawn.
MG.ready = MG.loadLanguage().catch(() => null).then(() => MG.loadUser()).catch(() => null);
