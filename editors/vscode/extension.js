// The nnlang extension: starts `nnlangc lsp` for .nn files. Everything it shows (diagnostics,
// hover, completion, definitions, references, rename, symbols, formatting) comes from it.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("nnlang").get("server.path") || "nnlangc";
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "nnlang",
    "nnlang",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "nnlang" }, { scheme: "untitled", language: "nnlang" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
