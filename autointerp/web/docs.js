// Swagger UI from local files; kept out of the HTML because the CSP forbids inline scripts.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
