const base = process.memoryUsage().rss;
const mods = process.argv.slice(2);
for (const m of mods) { await import(m); console.log(m, ((process.memoryUsage().rss)/1e6).toFixed(1)); }
