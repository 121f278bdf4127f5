const source = new EventSource("/events");
source.addEventListener("tick", (e) => {
  document.getElementById("clock").textContent = e.data;
});
