// A com.sun.net.httpserver server answering every request with a 1 KiB page, on
// 127.0.0.1:PORT (args[0]), two worker threads, for bench/run.py's web rows.
import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.util.concurrent.Executors;

public class HttpBench {
    public static void main(String[] args) throws Exception {
        byte[] body = ("<html>" + "x".repeat(1011) + "</html>\n").getBytes();
        HttpServer server =
                HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 128);
        server.createContext("/", exchange -> {
            exchange.getResponseHeaders().set("Content-Type", "text/html");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.setExecutor(Executors.newFixedThreadPool(2));
        server.start();
    }
}
