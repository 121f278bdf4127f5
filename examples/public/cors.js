// Calls the JSON API of another origin: the browser allows it only if that server's CORS
// headers name this page's origin.
const api = new URLSearchParams(location.search).get("api") || location.origin;
document.getElementById("api").textContent = api;

async function show(id, request) {
  const element = document.getElementById(id);
  try {
    const response = await request();
    element.textContent = "ok " + JSON.stringify(await response.json());
  } catch (error) {
    element.textContent = "blocked " + error.name;
  }
}

show("get", () => fetch(api + "/api/time"));
show("post", () => fetch(api + "/api/echo", {
  method: "POST",
  headers: { "content-type": "application/json" },  // not a simple request: preflight first
  body: JSON.stringify({ from: location.origin }),
}));
