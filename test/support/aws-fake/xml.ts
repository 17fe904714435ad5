/** The AWS Query protocol's XML envelopes, as STS and IAM write them. */

export const NAMESPACES = {
  sts: 'https://sts.amazonaws.com/doc/2011-06-15/',
  iam: 'https://iam.amazonaws.com/doc/2010-05-08/',
} as const;

export const VERSIONS = { sts: '2011-06-15', iam: '2010-05-08' } as const;

export type Service = keyof typeof NAMESPACES;

export function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** A tree of elements: strings are text, arrays become repeated `<member>`s, undefined is omitted. */
export type XmlNode = string | number | boolean | undefined | XmlNode[] | { [name: string]: XmlNode };

function render(name: string, node: XmlNode, indent: string): string {
  if (node === undefined) return '';
  if (Array.isArray(node)) {
    const members = node.map((m) => render('member', m, indent + '  ')).join('');
    return `${indent}<${name}>\n${members}${indent}</${name}>\n`;
  }
  if (typeof node === 'object') {
    const children = Object.entries(node)
      .map(([k, v]) => render(k, v, indent + '  '))
      .join('');
    return `${indent}<${name}>\n${children}${indent}</${name}>\n`;
  }
  return `${indent}<${name}>${escapeXml(String(node))}</${name}>\n`;
}

/** `<XResponse xmlns=…><XResult>…</XResult><ResponseMetadata><RequestId>…` (no Result element when `result` is undefined). */
export function successXml(service: Service, action: string, result: Record<string, XmlNode> | undefined, requestId: string): string {
  const body = result === undefined ? '' : render(`${action}Result`, result, '  ');
  return (
    `<${action}Response xmlns="${NAMESPACES[service]}">\n` +
    body +
    `  <ResponseMetadata>\n    <RequestId>${requestId}</RequestId>\n  </ResponseMetadata>\n` +
    `</${action}Response>\n`
  );
}

/** `<ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/></Error><RequestId/></ErrorResponse>`. */
export function errorXml(service: Service, status: number, code: string, message: string, requestId: string): string {
  const type = status >= 500 ? 'Receiver' : 'Sender';
  return (
    `<ErrorResponse xmlns="${NAMESPACES[service]}">\n` +
    `  <Error>\n    <Type>${type}</Type>\n    <Code>${escapeXml(code)}</Code>\n    <Message>${escapeXml(message)}</Message>\n  </Error>\n` +
    `  <RequestId>${requestId}</RequestId>\n` +
    `</ErrorResponse>\n`
  );
}
