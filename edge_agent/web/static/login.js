// The login form posts the token as JSON (the agent's API takes JSON bodies); without
// script the form posts itself, which the agent also understands.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login");
  form.addEventListener("submit", async event => {
    event.preventDefault();
    const token = document.getElementById("token").value;
    const r = await fetch("/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
    });
    if (r.ok && !r.url.endsWith("/login")) { location.href = "/"; return; }
    const box = document.getElementById("login-error");
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = r.status === 401 ? "Wrong token: try again." : "Sign-in failed (" + r.status + ").";
    box.replaceChildren(p);
  });
});
