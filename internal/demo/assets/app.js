// Fetches the JSON API through gatehouse and shows its answer, proving the
// page's own script can reach the backend through the same route.
(async () => {
  const out = document.getElementById("api");
  try {
    const res = await fetch("/api/journey", { cache: "no-store" });
    const data = await res.json();
    out.textContent = JSON.stringify(data, null, 2);
    out.dataset.status = String(res.status);
  } catch (err) {
    out.textContent = "the API call failed: " + err;
    out.dataset.status = "error";
  }
})();
