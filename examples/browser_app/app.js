// A front end of starterkit's browser sessions, in plain JavaScript with no build step.
//
// The tokens live in HttpOnly cookies this script never sees. It keeps only the session's
// CSRF token, which it sends as X-CSRF-Token on every POST, PUT, PATCH and DELETE. When a
// call answers 401 (the access cookie expired), it refreshes the session once and retries.

let api = "";
let csrfToken = null;

const $ = (id) => document.getElementById(id);

async function call(path, { method = "GET", json, retry = true } = {}) {
  const headers = {};
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  if (json !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(api + path, {
    method,
    headers,
    body: json === undefined ? undefined : JSON.stringify(json),
    credentials: "include", // send and keep the API's cookies across origins
  });
  if (response.status === 401 && retry && (await refresh())) {
    return call(path, { method, json, retry: false });
  }
  return response;
}

async function refresh() {
  if (!csrfToken) return false;
  const response = await fetch(api + "/auth/browser/refresh", {
    method: "POST",
    headers: { "X-CSRF-Token": csrfToken },
    credentials: "include",
  });
  if (!response.ok) return false;
  csrfToken = (await response.json()).csrf_token;
  return true;
}

function say(text) {
  $("status").textContent = text;
}

function show(signedIn) {
  $("login").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
}

async function loadUser() {
  const response = await call("/users/me");
  if (!response.ok) return false;
  $("who").textContent = (await response.json()).email;
  return true;
}

async function loadItems() {
  const response = await call("/items?limit=50");
  if (!response.ok) return say(`Could not load items (${response.status}).`);
  const list = $("items");
  list.replaceChildren();
  for (const item of (await response.json()).items) {
    const entry = document.createElement("li");
    entry.textContent = item.title; // text, never HTML
    list.append(entry);
  }
}

async function signedIn() {
  if (!(await loadUser())) return show(false);
  show(true);
  await loadItems();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch(api + "/auth/browser/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email: $("email").value, password: $("password").value }),
    credentials: "include",
  });
  const body = await response.json();
  if (!response.ok) return say(body.detail);
  if (body.mfa_required) return say("This account has a second factor; this example stops here.");
  csrfToken = body.csrf_token;
  say("");
  await signedIn();
});

$("new-item").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await call("/items", { method: "POST", json: { title: $("title").value } });
  if (!response.ok) return say(`Could not add the item (${response.status}).`);
  $("title").value = "";
  say("");
  await loadItems();
});

$("logout").addEventListener("click", async () => {
  await call("/auth/browser/logout", { method: "POST", retry: false });
  csrfToken = null;
  $("items").replaceChildren();
  show(false);
  say("Logged out.");
});

async function start() {
  api = (await (await fetch("config.json")).json()).api;
  // After a reload the cookies may still hold a session: ask the API for its CSRF token
  // (this works whether or not this page can read the API's starterkit_csrf cookie).
  const response = await fetch(api + "/auth/browser/csrf", { credentials: "include" });
  if (response.ok) {
    csrfToken = (await response.json()).csrf_token;
    await signedIn();
  } else {
    show(false);
  }
  document.body.dataset.ready = "true";
}

start();
