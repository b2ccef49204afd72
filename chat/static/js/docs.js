// Starts Swagger UI on /docs (chat/templates/docs.html). A file of its own: the page's policy runs no inline script.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    showExtensions: true,
    showCommonExtensions: true,
    // No "valid" badge: it would send the document to a validator on another origin.
    validatorUrl: null,
  });
});
