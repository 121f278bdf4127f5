// Without this script the form still works (the browser shows the JSON answer).
const form = document.getElementById("upload");
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const result = document.getElementById("result");
  result.textContent = "sending...";
  const response = await fetch(form.action, { method: "POST", body: new FormData(form) });
  result.textContent = response.status + " " + JSON.stringify(await response.json());
});
