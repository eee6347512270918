// Numbers and times as a person reads them.

const UNITS = ["", "k", "M", "G", "T", "P", "E"];

/** 1234567 -> "1.23 M"; past the units, scientific ("3.4e+21"). */
export function count(value: number): string {
  if (!Number.isFinite(value)) return "—";
  if (value < 1000) return String(Math.round(value));
  let unit = 0;
  let scaled = value;
  while (scaled >= 1000 && unit < UNITS.length - 1) {
    scaled /= 1000;
    unit += 1;
  }
  if (scaled >= 1000) return value.toExponential(1);
  return `${scaled.toFixed(scaled < 10 ? 2 : scaled < 100 ? 1 : 0)} ${UNITS[unit]}`;
}

export function rate(hashesPerSecond: number): string {
  const scaled = count(hashesPerSecond);
  return /[a-zA-Z]$/.test(scaled) ? `${scaled}H/s` : `${scaled} H/s`;
}

export function seconds(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  if (value < 1) return "under 1 s";
  if (value < 120) return `${Math.round(value)} s`;
  if (value < 7200) return `${Math.round(value / 60)} min`;
  if (value < 86400 * 2) return `${Math.round(value / 3600)} h`;
  if (value < 86400 * 730) return `${Math.round(value / 86400)} days`;
  return `${(value / 31_557_600).toPrecision(2)} years`;
}

export function shortId(jobId: string): string {
  return jobId.length > 22 ? `${jobId.slice(0, 9)}…${jobId.slice(-8)}` : jobId;
}

export function clock(date: Date): string {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
